"""create_app(settings): the notifier's composition root, its lifespan and its routes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.notifier.consumer import matches_consumer, matches_handler, posts_consumer, posts_handler
from services.notifier.clock import Clock, utcnow
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import Resolver, system_resolver
from services.notifier.escalation import EscalationWorker
from services.notifier.policy import Policies
from services.notifier.response_publisher import ResponsePublisher
from services.notifier.routes import deliveries, invitations, people, subscriptions, threads
from services.notifier.settings import NotifierSettings
from services.notifier.store.database import Database
from shared.consumer import ConsumerLoop, Handler
from shared.errors import install_error_handlers
from shared.events import INVITATION_CREATED, InvitationCreated
from shared.health import consumer_check, health_router
from shared.kafka import broker_check, make_producer
from shared.outbox import open_publisher
from shared.tasks import start_task
from shared.topics import MATCHES, POSTS, RESPONSES

log = logging.getLogger(__name__)


def webhook_client(settings: NotifierSettings) -> httpx.AsyncClient:
    """Redirects are not followed: a webhook endpoint that moves must be subscribed again."""
    timeout = httpx.Timeout(settings.total_timeout, connect=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers={"user-agent": "expertmatch-notifier"})


def create_app(
    settings: NotifierSettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock = utcnow,
    resolver: Resolver = system_resolver,
) -> FastAPI:
    """The notifier: HTTP API, consumers of matches and posts, delivery and escalation, built in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            db = Database(settings.database_url)
            stack.push_async_callback(db.close)
            await db.migrate()
            client = http_client or await stack.enter_async_context(webhook_client(settings))
            worker = _delivery_worker(settings, db, client, clock, resolver)
            _start(stack, "delivery worker", worker.run, worker.stop)
            policies = settings.policies()
            escalation = EscalationWorker(
                db=db, policies=policies, on_invited=worker.wake, clock=clock,
                poll_interval=settings.escalation_poll_interval,
            )
            _start(stack, "escalation worker", escalation.run, escalation.stop)
            app.state.db, app.state.worker, app.state.escalation = db, worker, escalation
            app.state.clock, app.state.resolver, app.state.allow_list = clock, resolver, settings.allow_list
            app.state.secret_overlap = timedelta(seconds=settings.secret_overlap)
            app.state.publisher = None
            app.state.tenants_by_key = settings.tenants_by_key
            app.state.readiness = {"database": db.ping}
            if settings.consume:
                await _start_broker_work(app, stack, settings, db, policies, worker, clock)
            yield

    app = FastAPI(title="expertmatch notifier", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health_router())
    for module in (subscriptions, invitations, deliveries, people, threads):
        app.include_router(module.router)
    _declare_webhooks(app)
    return app


def _declare_webhooks(app: FastAPI) -> None:
    """What subscribers receive, in the OpenAPI document's `webhooks` (nothing is served here)."""

    @app.webhooks.post(INVITATION_CREATED)
    def invitation_created(body: InvitationCreated) -> None:
        """A colleague is invited to a thread. Signed per Standard Webhooks (`webhook-id`,
        `webhook-timestamp`, `webhook-signature`); the same `webhook-id` on every retry. Any 2xx
        acknowledges it; 410 disables the subscription."""


def _delivery_worker(
    settings: NotifierSettings, db: Database, client: httpx.AsyncClient, clock: Clock, resolver: Resolver
) -> DeliveryWorker:
    return DeliveryWorker(
        db=db,
        client=client,
        schedule=settings.retry_delays,
        total_timeout=settings.total_timeout,
        batch_size=settings.delivery_batch_size,
        poll_interval=settings.delivery_poll_interval,
        clock=clock,
        allow=settings.allow_list,
        resolve=resolver,
        disable_after=timedelta(seconds=settings.disable_after),
    )


async def _start_broker_work(
    app: FastAPI,
    stack: AsyncExitStack,
    settings: NotifierSettings,
    db: Database,
    policies: Policies,
    worker: DeliveryWorker,
    clock: Clock,
) -> None:
    producer = make_producer(settings)
    await producer.start()
    stack.push_async_callback(producer.stop)
    events = await stack.enter_async_context(open_publisher(settings, producer, name="notifier"))
    publisher = ResponsePublisher(
        db=db,
        send=lambda responses: events.publish(settings.topic(RESPONSES), responses),
        clock=clock,
        poll_interval=settings.escalation_poll_interval,
    )
    _start(stack, "response publisher", publisher.run, publisher.stop)
    app.state.publisher = publisher
    matches = matches_handler(db, policies=policies, on_invited=worker.wake, clock=clock)
    app.state.consumer_loop = await _start_loop(stack, settings, "notifier", matches_consumer(settings), producer, matches)
    posts = posts_handler(db, clock=clock)
    app.state.posts_loop = await _start_loop(stack, settings, "notifier-posts", posts_consumer(settings), producer, posts)
    topics = [settings.topic(name) for name in (MATCHES, POSTS, RESPONSES)]
    app.state.readiness["broker"] = broker_check(settings, *topics)
    app.state.readiness["consumer"] = consumer_check(app.state.consumer_loop)
    app.state.readiness["posts_consumer"] = consumer_check(app.state.posts_loop)


async def _start_loop(
    stack: AsyncExitStack,
    settings: NotifierSettings,
    name: str,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    handler: Handler,
) -> ConsumerLoop:
    await consumer.start()
    stack.push_async_callback(consumer.stop)
    loop = ConsumerLoop(
        consumer=consumer, producer=producer, handler=handler, name=name, epoch_file=settings.kafka_epoch_file
    )
    # Stopped before the consumer and producer close: its last batch is handled and committed first.
    _start(stack, name, loop.run, loop.stop)
    return loop


def _start(stack: AsyncExitStack, name: str, run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    task = start_task(run(), name=name)

    async def _finish() -> None:
        stop()
        await task

    stack.push_async_callback(_finish)
