"""The pieces of `expertmatch run`: demo receiver, API key, ports, command line, restarts, topics."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks import Webhook

from services.cli import build_parser
from services.embedded.backoff import Backoff
from services.embedded.broker import topic_partitions
from services.embedded.children import Child, ChildFailed, child_env, current_env
from services.embedded.receiver import DemoReceiver
from services.embedded.runner import RunOptions, api_keys, create_topics, run, taken_ports
from services.notifier.signing import new_secret
from shared.embedded_broker import free_port
from shared.settings import CommonSettings
from tests.support.clocks import ManualClock
from tests.support.topics import expected_partitions

pytestmark = pytest.mark.integration


def invitation_body() -> str:
    return json.dumps({
        "type": "invitation.created",
        "data": {
            "person_id": "lars.nygaard",
            "thread_id": "t-lag",
            "score": 0.8123,
            "why": "You answered “Consumer lag on catalog-indexer keeps growing after deploys” (accepted).",
            "question": {"title": "orders topic consumer lag climbs", "url": None},
            "parts": {"activity": 0.1, "similarity": 0.52, "lexical": -0.03, "tags": 0.24},
        },
    })


def signed(secret: str, body: str) -> dict[str, str]:
    """Headers signed by the independent standardwebhooks package, as a real notifier would send."""
    now = datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", now, body)
    return {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature, "content-type": "application/json"}


@pytest.fixture
async def receiver():
    running = DemoReceiver(names={"lars.nygaard": "Lars Nygaard"})
    await running.start()
    yield running
    await running.stop()


async def test_the_receiver_prints_a_verified_invitation(receiver, capsys):
    secret = new_secret()
    receiver.trust(secret)
    body = invitation_body()

    async with httpx.AsyncClient() as http:
        response = await http.post(receiver.url, content=body, headers=signed(secret, body))

    assert response.status_code == 204
    out = capsys.readouterr().out
    assert (
        'INVITATION -> Lars Nygaard to "orders topic consumer lag climbs" '
        "(score 0.81: similarity 0.52, tags 0.24, activity 0.10)" in out
    )
    assert "why: You answered “Consumer lag on catalog-indexer" in out
    assert "signature verified" in out
    assert receiver.received == 1


async def test_the_receiver_refuses_a_wrong_signature(receiver, capsys):
    receiver.trust(new_secret())
    body = invitation_body()

    async with httpx.AsyncClient() as http:
        response = await http.post(receiver.url, content=body, headers=signed(new_secret(), body))

    assert response.status_code == 401
    out = capsys.readouterr().out
    assert "REJECTED" in out and "INVITATION" not in out
    assert receiver.received == 0


def test_the_api_key_is_generated_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("EXPERTMATCH_API_KEYS", raising=False)

    first = api_keys(tmp_path)
    again = api_keys(tmp_path)

    assert first == again
    key, tenant = first.split(":")
    assert tenant == "demo" and len(key) > 20
    assert (tmp_path / "api-key").stat().st_mode & 0o077 == 0


def test_configured_api_keys_win(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPERTMATCH_API_KEYS", "k1:acme")

    assert api_keys(tmp_path) == "k1:acme"
    assert not (tmp_path / "api-key").exists()


def test_a_taken_port_is_named_and_nothing_starts(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert taken_ports((port,)) == [port]

        code = run(RunOptions(data_dir=tmp_path, ports=(port, port + 1, port + 2)))

    assert code == 2
    out = capsys.readouterr().out
    assert f"port {port} (ingest) is already in use" in out
    assert "broker" not in out


def test_the_command_line_reads_ports_and_refuses_bad_ones(capsys):
    args = build_parser().parse_args(["run", "--ports", "9001,9002,9003", "--no-demo"])
    assert args.ports == (9001, 9002, 9003) and args.no_demo

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--ports", "9001,9002"])
    assert "INGEST,MATCHER,NOTIFIER" in capsys.readouterr().err


def crashing_child(clock: ManualClock, sleep, *, message: str = "no model here") -> Child:
    return Child(
        "matcher", free_port(), child_env(current_env()),
        command=(sys.executable, "-c", f"import sys; print({message!r}); sys.exit(3)"),
        backoff=Backoff(first=1, cap=30, stable_after=60, clock=clock),
        sleep=sleep,
    )


async def test_a_service_that_always_crashes_is_restarted_ever_more_slowly(capsys):
    clock = ManualClock(0.0)
    delays: list[float] = []
    seven = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        clock.now += seconds
        if len(delays) == 7:
            seven.set()
            await asyncio.Event().wait()  # the seventh wait lasts until the child is stopped

    child = crashing_child(clock, sleep)
    async with httpx.AsyncClient() as http:
        await child.start()
        keeper = asyncio.create_task(child.keep_running(http))
        await asyncio.wait_for(seven.wait(), 120)
        await child.stop()
        await asyncio.wait_for(keeper, 30)

    # Seven runs, each followed by a wait before the next: never a restart without one.
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    out = capsys.readouterr().out
    assert out.count("no model here") == 7
    for delay in (1, 2, 4, 8, 16, 30):
        assert f"matcher exited (code 3); restarting in {delay}s" in out
    assert out.count("matcher restarted (pid ") == 6
    assert "ready again" not in out


async def test_a_service_that_never_gets_ready_ends_the_run_after_a_few_exits():
    clock = ManualClock(0.0)

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    child = crashing_child(clock, sleep, message="MATCHER_CANDIDATES: must be at least 1")
    async with httpx.AsyncClient() as http:
        await child.start()
        keeper = asyncio.create_task(child.keep_running(http))
        with pytest.raises(ChildFailed, match=r"matcher exited \d+ times before it was ever ready"):
            await child.wait_ready(http, timeout=120)
        await child.stop()
        await asyncio.wait_for(keeper, 30)


async def test_stopping_ends_a_restart_delay_at_once():
    clock = ManualClock(0.0)
    waiting = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    child = crashing_child(clock, sleep)
    async with httpx.AsyncClient() as http:
        await child.start()
        keeper = asyncio.create_task(child.keep_running(http))
        await asyncio.wait_for(waiting.wait(), 60)
        await child.stop()
        await asyncio.wait_for(keeper, 60)  # far less than the hour it was waiting out

    assert keeper.done() and child.process.returncode == 3


def test_on_a_kafka_of_ones_own_the_topics_are_created_once(broker, topic_prefix, monkeypatch, capsys):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", topic_prefix)

    assert create_topics(CommonSettings())
    assert create_topics(CommonSettings())

    partitions = asyncio.run(topic_partitions(broker.bootstrap_servers))
    assert {name: n for name, n in partitions.items() if name.startswith(topic_prefix)} == expected_partitions(
        topic_prefix
    )
    out = capsys.readouterr().out
    assert f"using the Kafka broker at {broker.bootstrap_servers}; topics: created {topic_prefix}posts" in out
    assert f"using the Kafka broker at {broker.bootstrap_servers}; topics: all exist" in out


def test_a_broker_that_cannot_be_reached_stops_the_run_before_any_service(tmp_path, monkeypatch, capsys):
    nowhere = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", nowhere)
    ports = (free_port(), free_port(), free_port())

    code = run(RunOptions(data_dir=tmp_path, ports=ports, demo=False))

    assert code == 1
    out = capsys.readouterr().out
    assert f"could not create the topics on the Kafka broker at {nowhere}" in out
    assert "started (pid" not in out
    assert not (tmp_path / "broker-epoch").exists()
