"""Wiring from the posts and responses topics to the matcher's handler; the loop lives in shared/consumer.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer

from services.matcher.settings import MatcherSettings
from shared.consumer import ConsumerLoop, Handler
from shared.kafka import make_consumer
from shared.topics import POSTS, RESPONSES

GROUP = "matcher"


@asynccontextmanager
async def posts_consumer(
    settings: MatcherSettings,
    *,
    producer: AIOKafkaProducer,
    handler: Handler,
    on_caught_up: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[ConsumerLoop]:
    """A started consumer in the matcher group, as a loop; closed on exit.

    Posts keep the index in step; responses to invitations (`invitation.responded`) move the
    ranking of the next questions close to theirs.
    """
    topics = (settings.topic(POSTS), settings.topic(RESPONSES))
    consumer = make_consumer(settings, *topics, group_id=settings.topic(GROUP))
    await consumer.start()
    try:
        yield ConsumerLoop(
            consumer=consumer,
            producer=producer,
            handler=handler,
            name="matcher",
            max_records=settings.batch_size,
            on_caught_up=on_caught_up,
            epoch_file=settings.kafka_epoch_file,
        )
    finally:
        await consumer.stop()
