"""The outbox against a real broker that dies: what was accepted is resent, what was consumed is forgotten."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from shared.consumer import ConsumerLoop
from shared.embedded_broker import EmbeddedBroker
from shared.epoch import next_epoch, write_epoch
from shared.kafka import make_consumer, make_producer
from shared.outbox import DirectPublisher, open_publisher
from shared.settings import CommonSettings
from shared.topics import MATCHES
from tests.support.events import answer_event
from tests.support.topics import create_topics
from tests.support.waiting import until

pytestmark = pytest.mark.integration


class _Broker:
    """An embedded broker as its owner runs it: topics first, then the epoch."""

    def __init__(self, tmp_path, prefix: str) -> None:
        self.epoch_file = tmp_path / "broker-epoch"
        self._log = tmp_path / "broker.log"
        self._prefix = prefix
        self.process = EmbeddedBroker(log_path=self._log)

    def start(self) -> None:
        self.process.start()
        create_topics(self.process.bootstrap_servers, self._prefix)
        write_epoch(self.epoch_file, next_epoch(self.epoch_file))

    def kill_and_restart(self) -> None:
        """kill -9, then a new, empty broker on the same port."""
        port = self.process.port
        self.process._process.kill()
        self.process._process.wait()
        self.process = EmbeddedBroker(port=port, log_path=self._log)
        self.start()

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def owned_broker(tmp_path, topic_prefix):
    broker = _Broker(tmp_path, topic_prefix)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def settings(owned_broker, topic_prefix, tmp_path) -> CommonSettings:
    return CommonSettings(
        kafka_bootstrap_servers=owned_broker.process.bootstrap_servers,
        kafka_topic_prefix=topic_prefix,
        kafka_session_timeout_ms=3_000,
        kafka_epoch_file=owned_broker.epoch_file,
        data_dir=tmp_path / "data",
    )


class _Notifier:
    """A consumer in the group the outbox waits for on `matches`, counting what it handled.

    `pause()` and `start()` stop and start it as a process would be: a new consumer each time.
    """

    def __init__(self, settings: CommonSettings, producer) -> None:
        self.seen: Counter[str] = Counter()
        self._producer = producer
        self._settings = settings
        self._consumer = None
        self._task: asyncio.Task | None = None
        self.loop: ConsumerLoop | None = None

    async def handle(self, events) -> None:
        self.seen.update(event.data.id for event in events)

    async def start(self) -> None:
        settings = self._settings
        self._consumer = make_consumer(settings, settings.topic(MATCHES), group_id=settings.topic("notifier"))
        self.loop = ConsumerLoop(
            consumer=self._consumer, producer=self._producer, handler=self.handle, name="notifier",
            epoch_file=settings.kafka_epoch_file,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self.loop.run())

    async def pause(self) -> None:
        self.loop.stop()
        await self._task
        await self._consumer.stop()
        self._task = None

    async def close(self) -> None:
        if self._task is not None:
            await self.pause()


async def test_consumed_events_are_forgotten(settings):
    producer = make_producer(settings)
    await producer.start()
    notifier = _Notifier(settings, producer)
    try:
        async with open_publisher(settings, producer, name="matcher") as outbox:
            await outbox.publish(settings.topic(MATCHES), [answer_event(n, threads=4) for n in range(20)])
            assert (await outbox.stats()).held == 20
            await notifier.start()

            async def forgotten():
                return (await outbox.stats()).held == 0

            await until(forgotten, what="the outbox emptied once the notifier group committed")
    finally:
        await notifier.close()
        await producer.stop()
    assert notifier.seen == Counter(f"p{n}" for n in range(20)), "without a fault, each exactly once"


async def test_a_broker_that_died_with_unconsumed_events_gets_them_again(settings, owned_broker):
    producer = make_producer(settings)
    await producer.start()
    notifier = _Notifier(settings, producer)
    try:
        async with open_publisher(settings, producer, name="matcher") as outbox:
            topic = settings.topic(MATCHES)
            await notifier.start()
            await outbox.publish(topic, [answer_event(n, threads=4) for n in range(10)])

            async def first_handled():
                return len(notifier.seen) == 10

            await until(first_handled, what="the first ten handled")
            # The consumer is away while more is accepted; then the broker dies with it all.
            await notifier.pause()
            await outbox.publish(topic, [answer_event(n, threads=4) for n in range(10, 25)])
            owned_broker.kill_and_restart()

            await notifier.start()
            await outbox.publish(topic, [answer_event(n, threads=4) for n in range(25, 30)])

            async def all_handled():
                return set(notifier.seen) == {f"p{n}" for n in range(30)}

            await until(all_handled, what="every accepted event handled after the restart")

            async def forgotten():
                return (await outbox.stats()).held == 0

            await until(forgotten, what="the outbox emptied in the new epoch")
    finally:
        await notifier.close()
        await producer.stop()
    # At least once: what the old broker held uncommitted is handled again (consumers dedupe).
    assert sum(notifier.seen.values()) >= 30


async def test_without_an_epoch_file_nothing_is_kept(common_settings):
    producer = make_producer(common_settings)
    await producer.start()
    try:
        async with open_publisher(common_settings, producer, name="ingest") as publisher:
            assert isinstance(publisher, DirectPublisher)
            assert await publisher.publish(common_settings.topic(MATCHES), [answer_event(1)]) == 1
    finally:
        await producer.stop()
    assert not common_settings.data_dir.exists() or not list(common_settings.data_dir.glob("outbox-*"))
