"""The embedded broker's supervisor: killed -9, the broker is back on its port with its topics, then a new epoch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.embedded.broker import BrokerSupervisor, apply_topics, topic_partitions
from shared.embedded_broker import EmbeddedBroker, free_port
from shared.epoch import read_epoch, write_epoch
from shared.topics import load_topic_specs
from tests.support.topics import expected_partitions

pytestmark = pytest.mark.integration


def test_the_file_asks_for_six_partitions_per_topic_and_dead_letter_topics():
    # The figures the assertions below stand on, as deploy/topics.json gives them.
    assert expected_partitions("p-") == {
        "p-posts": 6, "p-posts.dlq": 1, "p-posts.backfill": 6, "p-posts.backfill.dlq": 1,
        "p-matches": 6, "p-matches.dlq": 1, "p-responses": 6, "p-responses.dlq": 1,
    }


async def test_a_killed_broker_is_back_on_its_port_with_its_topics_and_the_next_epoch(
    supervised_broker, topic_prefix, caplog
):
    caplog.set_level(logging.INFO, logger="services.embedded.broker")
    address, pid = supervised_broker.bootstrap_servers, supervised_broker.pid
    assert await topic_partitions(address) == expected_partitions(topic_prefix)
    epoch = read_epoch(supervised_broker.epoch_file)
    # A client asks for `posts` all along, as a consumer's metadata refresh does: each such request
    # to a broker that lacks the topic makes it create one with its own default partitions.
    asking = asyncio.create_task(keep_asking_for(address, f"{topic_prefix}posts"))
    try:
        assert supervised_broker.kill() == epoch
        back = await supervised_broker.restarted(epoch, timeout=60)
    finally:
        asking.cancel()

    assert back == epoch + 1 == read_epoch(supervised_broker.epoch_file)
    assert supervised_broker.bootstrap_servers == address and supervised_broker.pid != pid
    assert await topic_partitions(address) == expected_partitions(topic_prefix)
    said = [record.getMessage() for record in caplog.records]
    assert f"the broker died (killed by signal 9); it kept nothing: restarting it on {address}" in said
    assert any(line.startswith(f"the broker is back on {address}") and f"epoch {back} " in line for line in said)
    assert await round_trip(address, f"{topic_prefix}posts") == b"after the restart"


async def test_every_epoch_a_service_can_read_comes_after_its_topics(tmp_path, topic_prefix):
    epoch_file = tmp_path / "broker-epoch"
    write_epoch(epoch_file, 7)  # an earlier run's: a new broker is a new epoch
    port = free_port()
    seen: dict[int, dict[str, int]] = {}
    watching = threading.Event()
    watcher = threading.Thread(target=watch_epochs, args=(epoch_file, f"127.0.0.1:{port}", seen, watching))
    watcher.start()
    supervisor = BrokerSupervisor(epoch_file=epoch_file, topics=load_topic_specs(prefix=topic_prefix), port=port)
    try:
        await asyncio.to_thread(supervisor.start)
        assert supervisor.epoch == 8
        await asyncio.to_thread(wait_until, lambda: 8 in seen, 30)
        await supervisor.restarted(supervisor.kill(), timeout=60)
        await asyncio.to_thread(wait_until, lambda: 9 in seen, 30)
    finally:
        watching.set()
        await asyncio.to_thread(watcher.join)
        await asyncio.to_thread(supervisor.stop)

    # What the watcher found the moment each new number appeared in the file.
    assert seen[8] == seen[9] == expected_partitions(topic_prefix)


async def test_a_topic_a_client_made_first_is_replaced_as_the_file_says(topic_prefix):
    posts = f"{topic_prefix}posts"
    with EmbeddedBroker() as broker:
        await ask_for(broker.bootstrap_servers, posts)
        made_by_the_broker = (await topic_partitions(broker.bootstrap_servers))[posts]

        replaced = await apply_topics(broker.bootstrap_servers, load_topic_specs(prefix=topic_prefix), timeout=30)

        assert made_by_the_broker != 6
        assert replaced == [posts]
        assert await topic_partitions(broker.bootstrap_servers) == expected_partitions(topic_prefix)


async def test_a_stopped_broker_is_not_restarted(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="services.embedded.broker")
    supervisor = await asyncio.to_thread(BrokerSupervisor(epoch_file=tmp_path / "broker-epoch").start)
    host, port = supervisor.bootstrap_servers.split(":")

    await asyncio.to_thread(supervisor.stop)

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
    assert read_epoch(tmp_path / "broker-epoch") == 1
    assert not [record for record in caplog.records if "died" in record.getMessage()]


async def ask_for(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.describe_topics([topic])
    finally:
        await admin.close()


async def keep_asking_for(bootstrap: str, topic: str) -> None:
    while True:
        with contextlib.suppress(KafkaError, OSError):  # the broker is down for now
            await ask_for(bootstrap, topic)
        await asyncio.sleep(0.005)


async def round_trip(bootstrap: str, topic: str) -> bytes:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"after the restart", partition=0)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), 30)
        return record.value
    finally:
        await consumer.stop()


def watch_epochs(epoch_file: Path, bootstrap: str, seen: dict[int, dict[str, int]], done: threading.Event) -> None:
    """Each time the file names a new epoch, list the broker's topics at once, as a service would find them."""
    last = read_epoch(epoch_file)
    while not done.is_set():
        epoch = read_epoch(epoch_file)
        if epoch is not None and epoch != last:
            seen[epoch] = asyncio.run(topic_partitions(bootstrap))
            last = epoch
        done.wait(0.002)


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not so after {timeout:.0f}s")
        time.sleep(0.05)
