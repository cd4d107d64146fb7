"""Where accepted posts go: the posts topic, acknowledged by the broker before ingest answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.kafka import AnyEvent
from shared.outbox import EventPublisher


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time: the client should retry (ids make it idempotent)."""


class Publisher(Protocol):
    async def publish(self, events: Sequence[AnyEvent]) -> None:
        """Return only once every event is durably on the topic; else raise BrokerUnavailable."""


class KafkaPublisher:
    """Publishes to one topic with acks=all (through the outbox where the broker keeps nothing), bounded by a timeout."""

    def __init__(self, producer: AIOKafkaProducer, events: EventPublisher, topic: str, *, timeout_s: float) -> None:
        self._producer = producer
        self._events = events
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, events: Sequence[AnyEvent]) -> None:
        await self._check_topic()
        try:
            await asyncio.wait_for(self._events.publish(self._topic, events), self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge: {type(exc).__name__}") from exc

    async def _check_topic(self) -> None:
        """A topic the broker does not have is answered at once, not after the whole timeout."""
        cluster = self._producer.client.cluster
        if cluster.partitions_for_topic(self._topic) is not None:
            return
        try:
            await asyncio.wait_for(self._producer.client.force_metadata_update(), self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not answer: {type(exc).__name__}") from exc
        if cluster.partitions_for_topic(self._topic) is None:
            raise BrokerUnavailable(f"the topic {self._topic} does not exist on the broker")
