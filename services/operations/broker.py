"""The broker as the operator commands read it: consumers that never join a group, and their failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import make_consumer
from shared.settings import CommonSettings


class CommandFailed(Exception):
    """An operator command cannot do what was asked (no such topic or offset); the message says why, exit 1."""


@asynccontextmanager
async def reader(settings: CommonSettings, *, group_id: str | None = None) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer that joins no group: partitions are assigned to it by hand.

    With `group_id` it reads and commits that group's offsets without becoming a member, so the
    group's consumers are never rebalanced by it.
    """
    consumer = make_consumer(settings, group_id=group_id, request_timeout_ms=10_000)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def partitions(consumer: AIOKafkaConsumer, topic: str, bootstrap_servers: str) -> list[TopicPartition]:
    """Every partition of `topic`, or CommandFailed if the broker has no such topic.

    Call it before assigning anything: the client then keeps the metadata of assigned topics only.
    """
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:  # a topic created since the client started
        await consumer._client.force_metadata_update()
        numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise CommandFailed(f"no topic {topic} on the broker at {bootstrap_servers}")
    return [TopicPartition(topic, number) for number in sorted(numbers)]


async def end_offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The offset past each partition's last record, from a fetch's high watermark; assigns `tps`.

    Not ListOffsets alone: the embedded broker answers it with the last batch's base offset + 1,
    short of every later record of that batch. The fetch response's high watermark is right.
    """
    listed = await consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, listed[tp])
    while any(consumer.highwater(tp) is None for tp in tps):
        await consumer.getmany(*tps, timeout_ms=200, max_records=1)
    return {tp: max(listed[tp], consumer.highwater(tp)) for tp in tps}
