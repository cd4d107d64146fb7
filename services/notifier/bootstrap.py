"""The notifier's composition root: store, webhook client, workers, producer and consumers, on one exit stack.

`bootstrap(settings)` yields a running `Notifier`; the HTTP app and the tests use what it holds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.notifier.clock import Clock, utcnow
from services.notifier.consumer import matches_consumer, matches_handler, posts_consumer, posts_handler
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import AllowList, Resolver, system_resolver
from services.notifier.escalation import EscalationWorker
from services.notifier.policy import Policies
from services.notifier.response_publisher import ResponsePublisher
from services.notifier.settings import NotifierSettings
from services.notifier.store.database import Database
from shared.consumer import ConsumerLoop, Handler
from shared.health import Check, consumer_check
from shared.kafka import broker_check, make_producer
from shared.outbox import open_publisher
from shared.tasks import start_task
from shared.topics import MATCHES, POSTS, RESPONSES

log = logging.getLogger(__name__)


@dataclass
class Notifier:
    """Everything a running notifier holds; `publisher` and the loops are None when it does not consume."""

    db: Database
    worker: DeliveryWorker
    escalation: EscalationWorker
    clock: Clock
    resolver: Resolver
    allow_list: AllowList
    secret_overlap: timedelta
    tenants_by_key: Mapping[str, str]
    publisher: ResponsePublisher | None = None
    matches_loop: ConsumerLoop | None = None
    posts_loop: ConsumerLoop | None = None
    readiness: dict[str, Check] = field(default_factory=dict)


def webhook_client(settings: NotifierSettings) -> httpx.AsyncClient:
    """Redirects are not followed: a webhook endpoint that moves must be subscribed again."""
    timeout = httpx.Timeout(settings.total_timeout, connect=settings.connect_timeout)
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers={"user-agent": "expertmatch-notifier"})


@asynccontextmanager
async def bootstrap(
    settings: NotifierSettings,
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock = utcnow,
    resolver: Resolver = system_resolver,
) -> AsyncIterator[Notifier]:
    """A running notifier; on exit everything stops in reverse order (loops commit their last batch first)."""
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
        notifier = Notifier(
            db=db, worker=worker, escalation=escalation, clock=clock, resolver=resolver,
            allow_list=settings.allow_list, secret_overlap=timedelta(seconds=settings.secret_overlap),
            tenants_by_key=settings.tenants_by_key, readiness={"database": db.ping},
        )
        if settings.consume:
            await _start_broker_work(notifier, stack, settings, policies)
        yield notifier


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
    notifier: Notifier, stack: AsyncExitStack, settings: NotifierSettings, policies: Policies
) -> None:
    db, worker, clock = notifier.db, notifier.worker, notifier.clock
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
    notifier.publisher = publisher
    # The webhooks of a batch go out as soon as it commits, claimed in its transaction.
    matches = matches_handler(
        db, policies=policies, on_invited=worker.wake, send_now=worker.send_now, lease=worker.lease,
        per_transaction=settings.matches_per_transaction, clock=clock,
    )
    notifier.matches_loop = await _start_loop(
        stack, settings, "notifier", matches_consumer(settings), producer, matches
    )
    posts = posts_handler(db, clock=clock)
    notifier.posts_loop = await _start_loop(
        stack, settings, "notifier-posts", posts_consumer(settings), producer, posts
    )
    topics = [settings.topic(name) for name in (MATCHES, POSTS, RESPONSES)]
    notifier.readiness["broker"] = broker_check(settings, *topics)
    notifier.readiness["consumer"] = consumer_check(notifier.matches_loop)
    notifier.readiness["posts_consumer"] = consumer_check(notifier.posts_loop)


async def _start_loop(
    stack: AsyncExitStack,
    settings: NotifierSettings,
    name: str,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    handler: Handler,
) -> ConsumerLoop:
    loop = ConsumerLoop(
        consumer=consumer, producer=producer, handler=handler, name=name, epoch_file=settings.kafka_epoch_file
    )
    await consumer.start()  # after the loop has subscribed it with its listener
    stack.push_async_callback(consumer.stop)
    # Stopped before the consumer and producer close: its last batch is handled and committed first.
    _start(stack, name, loop.run, loop.stop)
    return loop


def _start(stack: AsyncExitStack, name: str, run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    task = start_task(run(), name=name)

    async def _finish() -> None:
        stop()
        await task

    stack.push_async_callback(_finish)
