"""Where accepted posts go: the posts topics, acknowledged by the broker before ingest answers.

Two lanes: posts flagged backfill (imports) go to `posts.backfill`, everything else (live posts,
deletes, erasures) to `posts`, so that a bulk import never stands in front of a live question.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.events import PostUpserted
from shared.kafka import AnyEvent
from shared.outbox import EventPublisher


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time: the client should retry (ids make it idempotent)."""


class Publisher(Protocol):
    async def publish(self, events: Sequence[AnyEvent]) -> None:
        """Return only once every event is durably on its topic; else raise BrokerUnavailable."""


def is_backfill(event: AnyEvent) -> bool:
    return isinstance(event, PostUpserted) and event.data.backfill


class KafkaPublisher:
    """Publishes with acks=all (through the outbox where the broker keeps nothing), bounded by a timeout."""

    def __init__(
        self, producer: AIOKafkaProducer, events: EventPublisher, *, live: str, backfill: str, timeout_s: float
    ) -> None:
        self._producer = producer
        self._events = events
        self._live = live
        self._backfill = backfill
        self._timeout_s = timeout_s

    async def publish(self, events: Sequence[AnyEvent]) -> None:
        lanes = {
            self._live: [event for event in events if not is_backfill(event)],
            self._backfill: [event for event in events if is_backfill(event)],
        }
        lanes = {topic: lane for topic, lane in lanes.items() if lane}
        for topic in lanes:
            await self._check_topic(topic)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self._events.publish(topic, lane) for topic, lane in lanes.items())), self._timeout_s
            )
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge: {type(exc).__name__}") from exc

    async def _check_topic(self, topic: str) -> None:
        """A topic the broker does not have is answered at once, not after the whole timeout."""
        cluster = self._producer.client.cluster
        if cluster.partitions_for_topic(topic) is not None:
            return
        try:
            await asyncio.wait_for(self._producer.client.force_metadata_update(), self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not answer: {type(exc).__name__}") from exc
        if cluster.partitions_for_topic(topic) is None:
            raise BrokerUnavailable(f"the topic {topic} does not exist on the broker")
