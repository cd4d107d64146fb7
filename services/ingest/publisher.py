"""Where accepted posts go: the posts topic, acknowledged by the broker before ingest answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.kafka import AnyEvent, publish


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time: the client should retry (ids make it idempotent)."""


class Publisher(Protocol):
    async def publish(self, events: Sequence[AnyEvent]) -> None:
        """Return only once every event is durably on the topic; else raise BrokerUnavailable."""


class KafkaPublisher:
    """Publishes to one topic with acks=all, bounded by a timeout."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, *, timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout_s = timeout_s

    async def publish(self, events: Sequence[AnyEvent]) -> None:
        try:
            await asyncio.wait_for(publish(self._producer, self._topic, events), self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise BrokerUnavailable(f"the broker did not acknowledge: {type(exc).__name__}") from exc
