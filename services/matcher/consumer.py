"""Wiring from the posts topic to the matcher's handler; the loop itself lives in shared/consumer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from services.matcher.settings import MatcherSettings
from shared.consumer import ConsumerLoop, Handler
from shared.kafka import make_consumer
from shared.topics import POSTS

GROUP = "matcher"


@asynccontextmanager
async def posts_consumer(
    settings: MatcherSettings, *, producer: AIOKafkaProducer, handler: Handler
) -> AsyncIterator[ConsumerLoop]:
    """A started consumer on the posts topic in the matcher group, as a loop; closed on exit."""
    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic(GROUP))
    await consumer.start()
    try:
        yield ConsumerLoop(
            consumer=consumer,
            producer=producer,
            handler=handler,
            name="matcher",
            max_records=settings.batch_size,
        )
    finally:
        await consumer.stop()
