"""Retries survive a crash, and replicas share the work: real processes, real PostgreSQL, a real receiver."""

import asyncio
import os
import signal
import subprocess
import sys

import httpx
import pytest
from asgi_lifespan import LifespanManager
from standardwebhooks.webhooks import Webhook

from services.notifier.app import create_app
from services.notifier.clock import utcnow
from services.notifier.settings import NotifierSettings
from services.notifier.store import Database, invitations
from shared.embedded_broker import free_port
from shared.kafka import make_producer, publish
from shared.topics import MATCHES
from tests.support.events import matched
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.integration

ACME = {"authorization": "Bearer acme-key"}


class NotifierProcess:
    """`python -m services.notifier.main` with the given environment."""

    def __init__(self, env: dict[str, str], log_path) -> None:
        self.env, self.log_path, self.port = env, log_path, int(env["NOTIFIER_PORT"])
        self.process: subprocess.Popen | None = None

    async def start(self) -> "NotifierProcess":
        with open(self.log_path, "ab") as log:  # the process holds its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.notifier.main"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

        async def ready() -> bool:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, what="the notifier process to be ready")
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def test_a_retry_pending_when_the_notifier_is_killed_is_delivered_once_by_the_next(tmp_path):
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "NOTIFIER_PORT": str(free_port()),
        "EXPERTMATCH_DATA_DIR": str(data_dir),
        "EXPERTMATCH_API_KEYS": "acme-key:acme",
        "NOTIFIER_CONSUME": "false",
        "NOTIFIER_ALLOWED_HOSTS": "127.0.0.0/8,::1",
        "NOTIFIER_RETRY_SCHEDULE": "2,2",
        "NOTIFIER_DELIVERY_POLL_INTERVAL": "0.1",
    }
    base = f"http://127.0.0.1:{env['NOTIFIER_PORT']}"
    with Receiver() as receiver:
        receiver.answer(500)
        first = await NotifierProcess(env, tmp_path / "first.log").start()
        try:
            async with httpx.AsyncClient(base_url=base, headers=ACME) as http:
                secret = (await http.post("/v1/subscriptions", json={"url": receiver.url})).json()["secret"]
            db = Database(f"sqlite+aiosqlite:///{data_dir.resolve() / 'notifier.db'}")
            await invitations.record_match(db, event=matched("ann"), now=utcnow())
            await receiver.wait_for(1)
            async with httpx.AsyncClient(base_url=base, headers=ACME) as http:

                async def retry_pending():
                    found = (await http.get("/v1/deliveries?state=pending")).json()
                    return found if found and found[0]["attempts"] == 1 else None

                await until(retry_pending, what="the first attempt to be recorded")
            first.kill()  # the retry is due in 2 s and lives only in the database now
        finally:
            first.stop()
        assert len(receiver.received()) == 1

        second = await NotifierProcess(env, tmp_path / "second.log").start()
        try:
            async with httpx.AsyncClient(base_url=base, headers=ACME) as http:

                async def delivered():
                    found = (await http.get("/v1/deliveries?state=delivered")).json()
                    return found or None

                (delivery,) = await until(delivered, what="the delivery after the restart")
            await asyncio.sleep(0.5)  # room for a duplicate to show up, if there were one
        finally:
            second.stop()
        await db.close()

    requests = receiver.received()
    assert len(requests) == 2
    assert {r.headers["webhook-id"] for r in requests} == {delivery["message_id"]}
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 200]
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)


async def test_two_notifiers_on_one_postgres_deliver_every_invitation_once(common_settings, postgres_url):
    settings = NotifierSettings(
        **common_settings.model_dump(), database_url=postgres_url, retry_schedule="0.1,0.1,0.1",
        allowed_hosts="127.0.0.0/8", delivery_poll_interval=0.1,
    )
    threads = [f"t{n}" for n in range(12)]
    with Receiver() as receiver:
        receiver.answer(500, 500)
        replicas = [create_app(settings), create_app(settings)]
        async with LifespanManager(replicas[0], startup_timeout=30, shutdown_timeout=30) as one:
            async with LifespanManager(replicas[1], startup_timeout=30, shutdown_timeout=30):
                transport = httpx.ASGITransport(app=one.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://n", headers=ACME) as api:
                    secret = (await api.post("/v1/subscriptions", json={"url": receiver.url})).json()["secret"]
                    producer = make_producer(settings)
                    await producer.start()
                    try:
                        events = [matched(f"a{t}", f"b{t}", f"c{t}", thread=t) for t in threads]
                        await publish(producer, settings.topic(MATCHES), events + events[:4])  # some twice
                    finally:
                        await producer.stop()

                    async def all_delivered():
                        found = (await api.get("/v1/deliveries?limit=500")).json()
                        done = len(found) == 3 * len(threads) and all(d["state"] == "delivered" for d in found)
                        return found if done else None

                    deliveries = await until(all_delivered, timeout=60, what="every invitation delivered")
                    await asyncio.sleep(0.5)  # room for a duplicate to show up, if there were one
                handled = sum(app.state.notifier.matches_loop.stats.handled for app in replicas)

    requests = receiver.received()
    ids = [r.headers["webhook-id"] for r in requests]
    assert handled >= len(threads) + 4
    assert set(ids) == {d["message_id"] for d in deliveries}
    assert len(ids) == len(deliveries) + 2  # once each, plus the two answered 500 and retried
    unseen = [a for d in deliveries for a in d["attempt_log"] if a["status_code"] is None]
    assert sum(len(d["attempt_log"]) for d in deliveries) == len(requests), f"attempts the receiver never saw: {unseen}"
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
