"""The shared consumer loop against the real broker: commits, dead letters, retries, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from shared.consumer import ConsumerLoop, TransientError
from shared.embedded_broker import EmbeddedBroker
from shared.kafka import ensure_topics, make_consumer, make_producer, publish
from shared.settings import CommonSettings
from shared.topics import POSTS, RESPONSES, dlq
from tests.support.clocks import ManualClock
from tests.support.events import answer_event
from tests.support.topics import create_topics, read_records
from tests.support.waiting import until

pytestmark = pytest.mark.integration


@pytest.fixture
async def kafka(common_settings):
    await ensure_topics(common_settings)
    producer = make_producer(common_settings)
    await producer.start()
    yield common_settings, producer
    await producer.stop()


async def _loop(settings, producer, handler, group="worker"):
    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic(group))
    await consumer.start()
    return consumer, ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="test")


async def test_handles_in_batches_and_commits_so_a_restart_does_not_replay(kafka):
    settings, producer = kafka
    await publish(producer, settings.topic(POSTS), [answer_event(n) for n in range(10)])
    seen: list[str] = []

    async def handler(events):
        seen.extend(e.data.id for e in events)

    consumer, loop = await _loop(settings, producer, handler)
    assert await loop.drain() == 10
    await consumer.stop()
    assert sorted(seen) == sorted(f"p{n}" for n in range(10))

    consumer, loop = await _loop(settings, producer, handler)
    assert await loop.drain() == 0, "committed offsets must not be handled again"
    await consumer.stop()


async def test_poison_messages_go_to_the_dlq_with_the_error_and_the_rest_is_handled(kafka):
    settings, producer = kafka
    topic = settings.topic(POSTS)
    await publish(producer, topic, [answer_event(1)])
    await producer.send_and_wait(topic, b"{not json", key=b"acme/t1")
    await publish(producer, topic, [answer_event(2), answer_event(3)])
    seen: list[str] = []

    async def handler(events):
        for event in events:
            if event.data.id == "p3":
                raise ValueError("p3 cannot be handled")
        seen.extend(e.data.id for e in events)

    consumer, loop = await _loop(settings, producer, handler)
    await loop.drain()
    await consumer.stop()

    assert sorted(seen) == ["p1", "p2"]
    dead = await read_records(settings, dlq(topic), 2)
    errors = {dict(r.headers)["error.type"].decode() for r in dead}
    assert errors == {"UndecodableEvent", "ValueError"}
    assert any(r.value == b"{not json" for r in dead)
    assert all(dict(r.headers)["original.topic"].decode() == topic for r in dead)


async def test_unknown_event_types_are_skipped_not_dead_lettered(kafka):
    settings, producer = kafka
    topic = settings.topic(POSTS)
    await producer.send_and_wait(topic, b'{"type": "post.liked", "tenant": "acme", "data": {}}')
    await publish(producer, topic, [answer_event(1)])
    seen: list[str] = []

    async def handler(events):
        seen.extend(e.data.id for e in events)

    consumer, loop = await _loop(settings, producer, handler)
    await loop.drain()
    await consumer.stop()
    assert seen == ["p1"]
    assert loop.stats.skipped == 1 and loop.stats.dead_lettered == 0


async def test_a_transient_failure_retries_the_batch_without_losing_it(kafka):
    settings, producer = kafka
    await publish(producer, settings.topic(POSTS), [answer_event(n) for n in range(4)])
    calls = 0
    seen: list[str] = []

    async def handler(events):
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise TransientError("index is down")
        seen.extend(e.data.id for e in events)

    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("worker"))
    await consumer.start()
    loop = ConsumerLoop(
        consumer=consumer, producer=producer, handler=handler, name="test", retry_backoff=(0.01,)
    )
    task = asyncio.create_task(loop.run())

    async def all_seen() -> bool:
        return len(seen) >= 4

    await until(all_seen, 20, what="the four posts, retried")
    loop.stop()
    await asyncio.wait_for(task, 10)
    await consumer.stop()
    assert sorted(seen) == ["p0", "p1", "p2", "p3"]
    assert loop.stats.retries == 2 and loop.stats.dead_lettered == 0


async def test_the_loop_says_when_it_has_caught_up_with_its_topics(kafka):
    settings, producer = kafka
    await publish(producer, settings.topic(POSTS), [answer_event(n) for n in range(5)])
    seen: list[str] = []
    caught_up: list[int] = []

    async def handler(events):
        seen.extend(e.data.id for e in events)

    async def on_caught_up():
        caught_up.append(len(seen))

    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("catching-up"))
    await consumer.start()
    loop = ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="test", on_caught_up=on_caught_up)
    try:
        await loop.drain(idle_polls=2)
    finally:
        await consumer.stop()

    # Only polls that bring nothing report it: after all five (or, while the group still forms, before any).
    assert caught_up and caught_up[-1] == 5 and set(caught_up) <= {0, 5}


async def test_a_loop_whose_topic_is_gone_says_so_after_the_grace_period(tmp_path):
    # A broker that starts over without its owner re-creating the topics: the loop polls
    # nothing, and must not look healthy for long.
    own = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    settings = CommonSettings(kafka_bootstrap_servers=own.bootstrap_servers, kafka_session_timeout_ms=3_000,
                              data_dir=tmp_path)
    create_topics(own.bootstrap_servers)
    producer = make_producer(settings)
    await producer.start()
    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("worker"))
    await consumer.start()
    clock = ManualClock(1_000.0)

    async def handler(events):
        pass

    loop = ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="test", grace=15, clock=clock)

    async def assigned() -> bool:
        return bool(consumer.assignment() and loop.running)

    async def unassigned() -> bool:
        return not consumer.assignment()

    task = asyncio.create_task(loop.run())
    try:
        await until(assigned, 60, what="the loop to be assigned", poll=0.1)
        clock.now += 100
        assert loop.health() is None, "assigned: healthy"
        port = own.port
        own._process.kill()
        own._process.wait()
        own = EmbeddedBroker(port=port, log_path=tmp_path / "broker.log").start()
        await until(unassigned, 60, what="the loop to give up the partitions of a topic that is gone", poll=0.1)
        await asyncio.sleep(1)  # a poll or two without partitions
        early = loop.health()
        clock.now += 16
        reason = loop.health()
    finally:
        loop.stop()
        await task
        await consumer.stop()
        await producer.stop()
        own.stop()
    assert early is None, "within the grace period"
    assert reason == f"no partition of {settings.topic(POSTS)} assigned for 16s"
    assert loop.health() == "stopped"


async def test_a_loop_that_keeps_failing_says_why_and_recovers(kafka):
    settings, producer = kafka
    await publish(producer, settings.topic(POSTS), [answer_event(1)])
    clock = ManualClock(1_000.0)
    down = True

    async def handler(events):
        if down:
            raise TransientError("index unavailable")

    consumer = make_consumer(settings, settings.topic(POSTS), group_id=settings.topic("worker"))
    await consumer.start()
    loop = ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="test",
                        retry_backoff=[0.01], grace=15, clock=clock)
    task = asyncio.create_task(loop.run())
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while loop.stats.retries < 2:
            assert asyncio.get_running_loop().time() < deadline, "the handler was never called"
            await asyncio.sleep(0.05)
        clock.now += 20
        failing = loop.health()
        down = False
        while loop.stats.handled < 1:
            assert asyncio.get_running_loop().time() < deadline, "never recovered"
            await asyncio.sleep(0.05)
        recovered = loop.health()
    finally:
        loop.stop()
        await task
        await consumer.stop()
    assert failing == "failing for 20s: TransientError: index unavailable"
    assert recovered is None


async def test_offsets_committed_to_a_restarted_broker_from_before_the_restart_are_not_trusted(
    supervised_broker, topic_prefix, tmp_path
):
    # A batch in hand while the broker died is committed to the new broker at its old positions,
    # which there point past records nobody has read; a rebalance then restores those offsets.
    # The loop, which followed the restart, reads the new log from its start all the same.
    settings = CommonSettings(
        kafka_bootstrap_servers=supervised_broker.bootstrap_servers, kafka_topic_prefix=topic_prefix,
        kafka_session_timeout_ms=3_000, kafka_epoch_file=supervised_broker.epoch_file, data_dir=tmp_path / "data",
    )
    topic, group = settings.topic(POSTS), settings.topic("worker")
    producer = make_producer(settings)
    await producer.start()
    seen: list[str] = []

    async def handler(events):
        seen.extend(e.data.id for e in events)

    consumer = make_consumer(settings, topic, group_id=group)
    loop = ConsumerLoop(consumer=consumer, producer=producer, handler=handler, name="test",
                        epoch_file=settings.kafka_epoch_file)
    await consumer.start()
    joining = make_consumer(settings, settings.topic(RESPONSES), group_id=group)
    try:
        # One thread, so one partition: four posts.
        await publish(producer, topic, [answer_event(n, threads=1) for n in range(4)])
        while len(seen) < 4:
            await loop.run_once()
        [partition] = [tp for tp in consumer.assignment() if await consumer.committed(tp) == 4]

        epoch = supervised_broker.kill()
        await supervised_broker.restarted(epoch, timeout=60)
        # A batch in hand while the broker died: committed to the new broker at the old position.
        await until(lambda: _succeeds(consumer.commit({partition: 4})), timeout=60, what="the stale commit")

        async def following():
            await loop.run_once()  # follows the new epoch; the new log is empty
            return partition in consumer.assignment()

        await until(following, timeout=60, what="the loop on the new broker")
        await until(lambda: _succeeds(publish(producer, topic, [answer_event(n, threads=1) for n in range(10, 15)])),
                    timeout=60, what="five posts on the new broker, at offsets 0 to 4")
        # A member joins the group: the rebalance restores the committed offsets.
        await joining.start()
        await until(lambda: _true(bool(joining.assignment())), timeout=60, what="the rebalance")

        async def all_read():
            await loop.run_once()
            return {f"p{n}" for n in range(10, 15)} <= set(seen)

        await until(all_read, timeout=60, what="every post of the new log read")
    finally:
        for member in (joining, consumer):
            await member.stop()
        await producer.stop()


async def _succeeds(attempt) -> bool:
    try:
        await attempt
    except Exception:
        return False
    return True


async def _true(value: bool) -> bool:
    return value
