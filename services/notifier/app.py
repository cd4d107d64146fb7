"""create_app(settings): the notifier's composition root, its lifespan and its routes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from services.notifier.consumer import matches_consumer, matches_handler
from services.notifier.delivery import Clock, DeliveryWorker, utcnow
from services.notifier.routes import invitations, subscriptions
from services.notifier.settings import NotifierSettings
from services.notifier.store.database import Database
from shared.consumer import ConsumerLoop
from shared.health import health_router, running_check
from shared.kafka import broker_answers, ensure_topics, make_producer

log = logging.getLogger(__name__)


def webhook_client(settings: NotifierSettings) -> httpx.AsyncClient:
    """Redirects are not followed: a webhook endpoint that moves must be subscribed again."""
    timeout = httpx.Timeout(settings.total_timeout, connect=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers={"user-agent": "expertmatch-notifier"})


def create_app(
    settings: NotifierSettings, *, http_client: httpx.AsyncClient | None = None, clock: Clock = utcnow
) -> FastAPI:
    """The notifier: HTTP API, consumer of experts.matched and delivery worker, built in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            db = Database(settings.database_url)
            stack.push_async_callback(db.close)
            await db.migrate()
            client = http_client or await stack.enter_async_context(webhook_client(settings))
            worker = DeliveryWorker(
                db=db,
                client=client,
                schedule=settings.retry_delays,
                total_timeout=settings.total_timeout,
                batch_size=settings.delivery_batch_size,
                poll_interval=settings.delivery_poll_interval,
                clock=clock,
            )
            _start(stack, "delivery worker", worker.run, worker.stop)
            app.state.db, app.state.worker = db, worker
            app.state.tenants_by_key = settings.tenants_by_key
            app.state.readiness = {"database": db.ping}
            if settings.consume:
                app.state.consumer_loop = await _start_consumer(stack, settings, db, worker, clock)
                app.state.readiness["broker"] = lambda: broker_answers(settings)
                app.state.readiness["consumer"] = running_check(app.state.consumer_loop)
            yield

    app = FastAPI(title="expertmatch notifier", lifespan=lifespan)
    app.include_router(health_router())
    app.include_router(subscriptions.router)
    app.include_router(invitations.router)
    return app


async def _start_consumer(
    stack: AsyncExitStack, settings: NotifierSettings, db: Database, worker: DeliveryWorker, clock: Clock
) -> ConsumerLoop:
    await ensure_topics(settings)
    producer = make_producer(settings)
    await producer.start()
    stack.push_async_callback(producer.stop)
    consumer = matches_consumer(settings)
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    handler = matches_handler(db, limit=settings.max_invites_per_thread, on_invited=worker.wake, clock=clock)
    loop = ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="notifier")
    # Stopped before the consumer and producer close: its last batch is handled and committed first.
    _start(stack, "matches consumer", loop.run, loop.stop)
    return loop


def _start(stack: AsyncExitStack, name: str, run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    task = asyncio.create_task(run(), name=name)
    task.add_done_callback(_report_crash)

    async def _finish() -> None:
        stop()
        await task

    stack.push_async_callback(_finish)


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())
