"""Every event on the topics is a CloudEvent to CloudEvents tooling: the Kafka binding, structured mode.

Read back from the real broker and parsed with the CloudEvents SDK, as a consumer outside
expertmatch would: sent directly (Apache Kafka) and through the embedded default's outbox.
"""

from __future__ import annotations

import time

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat

from shared.epoch import write_epoch
from shared.events import event_key
from shared.kafka import make_consumer, make_producer
from shared.outbox import open_publisher
from shared.topics import POSTS
from tests.support.events import one_of_each_event

pytestmark = pytest.mark.integration

async def _read(settings, topic: str, count: int):
    consumer = make_consumer(settings, topic, group_id=None)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + 30
        while len(records) < count:
            assert time.monotonic() < deadline, f"read {len(records)} of {count} records"
            batch = await consumer.getmany(timeout_ms=500)
            records.extend(record for part in batch.values() for record in part)
    finally:
        await consumer.stop()
    return records


@pytest.mark.parametrize("path", ["direct", "outbox"])
async def test_each_event_is_a_structured_cloudevent_with_its_key_as_partitionkey(common_settings, tmp_path, path):
    settings = common_settings
    if path == "outbox":
        epoch_file = tmp_path / "broker-epoch"
        write_epoch(epoch_file, 1)
        settings = settings.model_copy(update={"kafka_epoch_file": epoch_file})
    events = one_of_each_event()
    producer = make_producer(settings)
    await producer.start()
    try:
        async with open_publisher(settings, producer, name="test") as publisher:
            await publisher.publish(settings.topic(POSTS), events)
    finally:
        await producer.stop()

    records = await _read(settings, settings.topic(POSTS), len(events))
    parsed = {}
    for record in records:
        headers = {name: value for name, value in record.headers}
        assert headers["content-type"] == b"application/cloudevents+json; charset=utf-8"
        cloud = from_kafka(KafkaMessage(headers=headers, key=record.key, value=record.value), JSONFormat())
        parsed[cloud.get_id()] = cloud
    for event in events:
        cloud = parsed[str(event.id)]
        assert cloud.get_specversion() == "1.0"
        assert cloud.get_type() == event.type
        assert cloud.get_source() == "expertmatch"
        assert cloud.get_time() == event.time
        assert cloud.get_extension("tenant") == "acme"
        assert cloud.get_extension("partitionkey") == event_key(event).decode()
        assert cloud.get_data() == event.model_dump(mode="json")["data"]
