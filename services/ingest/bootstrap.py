"""Ingest's composition root: the producer, its outbox and the publisher, on one exit stack.

`bootstrap(settings)` yields a running `Ingest`; the HTTP app uses what it holds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from services.ingest.publisher import KafkaPublisher, Publisher
from services.ingest.settings import IngestSettings
from shared.health import Check
from shared.kafka import broker_check, make_producer
from shared.outbox import open_publisher
from shared.topics import BACKFILL, POSTS

log = logging.getLogger(__name__)


@dataclass
class Ingest:
    """Everything a running ingest holds."""

    settings: IngestSettings
    publisher: Publisher
    tenants_by_key: Mapping[str, str]
    readiness: dict[str, Check] = field(default_factory=dict)


@asynccontextmanager
async def bootstrap(settings: IngestSettings, *, publisher: Publisher | None = None) -> AsyncIterator[Ingest]:
    """A running ingest; tests pass a fake `publisher` to run without a broker (and nothing to check)."""
    if publisher is not None:
        yield Ingest(settings=settings, publisher=publisher, tenants_by_key=settings.tenants_by_key)
        return
    async with AsyncExitStack() as stack:
        # No point retrying a send longer than the client waits for its answer.
        producer = make_producer(settings, request_timeout_ms=int(settings.publish_timeout_s * 1000))
        await producer.start()
        # Flushes whatever is in flight before closing.
        stack.push_async_callback(producer.stop)
        events = await stack.enter_async_context(open_publisher(settings, producer, name="ingest"))
        live, backfill = settings.topic(POSTS), settings.topic(BACKFILL)
        kafka = KafkaPublisher(producer, events, live=live, backfill=backfill, timeout_s=settings.publish_timeout_s)
        # Topics belong to their owner (`expertmatch topics`, the embedded supervisor): a missing
        # one makes ingest unready and its requests 503, never a topic made up here.
        readiness = {"broker": broker_check(settings, live, backfill)}
        log.info("ingest ready: publishing to %s, backfill to %s", live, backfill)
        yield Ingest(settings=settings, publisher=kafka, tenants_by_key=settings.tenants_by_key, readiness=readiness)
