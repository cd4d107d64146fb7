"""Fixtures shared by every tier: a real broker, a real PostgreSQL, the Stack Exchange data."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from services.embedded.broker import BrokerSupervisor
from shared.kafka import make_producer
from shared.settings import CommonSettings
from shared.topics import load_topic_specs
from tests.support.postgres import PostgresServer, find_pg_bin
from tests.support.topics import create_topics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One real Kafka-protocol broker per test session; tests keep apart by topic prefix.

    Watched as `expertmatch run` watches its own: if it dies it comes back on the same port.
    """
    folder = tmp_path_factory.mktemp("broker")
    with BrokerSupervisor(epoch_file=folder / "broker-epoch", log_path=folder / "broker.log") as running:
        yield running


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def supervised_broker(tmp_path, topic_prefix):
    """A broker of the test's own, to kill: `kill()` it, `await restarted(epoch, timeout)` for it to be back.

    It has the test's topics (deploy/topics.json under `topic_prefix`) from the start and again
    after every restart, each start then writing the next epoch to `epoch_file`.
    """
    with BrokerSupervisor(
        epoch_file=tmp_path / "broker-epoch",
        topics=load_topic_specs(prefix=topic_prefix),
        log_path=tmp_path / "broker.log",
    ) as running:
        yield running


@pytest.fixture
def common_settings(broker, topic_prefix, tmp_path) -> CommonSettings:
    """Settings for one test: its own topics (created, as their owner would) and data folder, two tenants."""
    create_topics(broker.bootstrap_servers, topic_prefix)
    return CommonSettings(
        api_keys="acme-key:acme,globex-key:globex",
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=topic_prefix,
        kafka_session_timeout_ms=3_000,
        data_dir=tmp_path / "data",
    )


@pytest.fixture
async def producer(common_settings):
    """A started producer on the test's broker, stopped after it."""
    producer = make_producer(common_settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    server = PostgresServer(bin_dir).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A fresh database on the real server for each test."""
    return postgres_server.create_database(f"t{uuid.uuid4().hex[:12]}")


def shared_dataset(name: str) -> Path:
    """A Stack Exchange dump from ../shared/data, or a skip that says why."""
    path = SHARED_DATA / name / "Posts.xml.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent: the Stack Exchange data lives beside the repo in ../shared/data")
    return path
