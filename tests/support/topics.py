"""Tests own their topics as `expertmatch topics` owns them in compose, check a broker against the file,
and read what a topic holds."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.kafka import ensure_topics, make_consumer
from shared.settings import CommonSettings

TOPICS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "topics.json"


def create_topics(bootstrap_servers: str, prefix: str = "") -> list[str]:
    """Every topic of deploy/topics.json under `prefix`; callable with or without a running loop."""
    settings = CommonSettings(kafka_bootstrap_servers=bootstrap_servers, kafka_topic_prefix=prefix)
    # Its own thread and loop: the caller may be a coroutine's fixture or plain code.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, ensure_topics(settings)).result()


def expected_partitions(prefix: str = "") -> dict[str, int]:
    """Every topic and its dead-letter topic under `prefix`, with its partition count, read straight from the file."""
    doc = json.loads(TOPICS_FILE.read_text())
    expected = {}
    for topic in doc["topics"]:
        expected[prefix + topic["name"]] = topic["partitions"]
        if topic.get("dlq"):
            expected[prefix + topic["name"] + ".dlq"] = doc["dlq"]["partitions"]
    return expected


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, asking the broker if the consumer has not seen the topic yet."""
    found = consumer.partitions_for_topic(topic)
    if not found:
        await consumer._client.force_metadata_update()
        found = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


async def read_records(
    settings: CommonSettings, topic: str, count: int, *, timeout: float = 20.0, linger: float = 0.0
) -> list[ConsumerRecord]:
    """The `count` records `topic` holds from its start; fails if fewer come within `timeout`, or more.

    `linger` reads that much longer once `count` are in, so that one too many is seen too.
    """
    # No consumer group: assigning the partitions directly skips the group join's delay.
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        consumer.assign(await partitions(consumer, topic))
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            records.extend(record for batch in batches.values() for record in batch)
        if linger:
            batches = await consumer.getmany(timeout_ms=int(linger * 1000))
            records.extend(record for batch in batches.values() for record in batch)
    finally:
        await consumer.stop()
    assert len(records) == count, f"expected {count} records on {topic}, found {len(records)}"
    return records
