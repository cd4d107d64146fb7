"""The notifier as its users see it: the HTTP API, and matches from the broker becoming webhooks."""

import json
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from standardwebhooks.webhooks import Webhook

from services.notifier.app import create_app
from services.notifier.clock import utcnow
from services.notifier.settings import NotifierSettings
from services.notifier.store import Database, invitations
from shared.kafka import make_producer, publish
from shared.topics import MATCHES
from tests.support.events import matched
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.integration

ACME = {"authorization": "Bearer acme-key"}
GLOBEX = {"authorization": "Bearer globex-key"}


def notifier_settings(common_settings, **overrides) -> NotifierSettings:
    # The test receiver listens on loopback, which webhooks may reach only when allow-listed.
    defaults = {"retry_schedule": "0.05,0.05", "allowed_hosts": "127.0.0.0/8,::1"}
    return NotifierSettings(**common_settings.model_dump(), **{**defaults, **overrides})


async def public_dns(host: str, port: int) -> list[str]:
    """Every name resolves to a public address: no test depends on real DNS."""
    return ["93.184.215.14"] if host != "localhost" else ["127.0.0.1"]


@asynccontextmanager
async def running(settings: NotifierSettings, *, shutdown_timeout: float = 30):
    """The notifier app started on the broker, a client of its API, and a producer of matches."""
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=shutdown_timeout) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://notifier") as api:
            producer = make_producer(settings)
            await producer.start()
            try:
                yield app, api, producer
            finally:
                await producer.stop()


@pytest.fixture
async def api(common_settings):
    app = create_app(notifier_settings(common_settings, consume=False), resolver=public_dns)
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://notifier"
        ) as client:
            yield client


async def test_requests_without_a_known_key_are_refused(api):
    assert (await api.get("/v1/subscriptions")).status_code == 401
    assert (await api.get("/v1/invitations", headers={"authorization": "Bearer nope"})).status_code == 401
    assert (await api.post("/v1/subscriptions", json={"url": "https://x/h"})).status_code == 401


async def test_a_subscription_shows_its_secret_once(api):
    created = await api.post(
        "/v1/subscriptions", json={"url": "https://intra.example/hooks", "description": "intranet"}, headers=ACME
    )
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["url"] == "https://intra.example/hooks"
    assert body["description"] == "intranet" and body["id"].startswith("sub_")

    listed = (await api.get("/v1/subscriptions", headers=ACME)).json()
    assert [s["id"] for s in listed] == [body["id"]]
    assert "secret" not in listed[0]
    one = (await api.get(f"/v1/subscriptions/{body['id']}", headers=ACME)).json()
    assert "secret" not in one and one["url"] == body["url"]


async def test_a_bad_url_is_refused_naming_the_field(api):
    answer = await api.post("/v1/subscriptions", json={"url": "ftp://x/y"}, headers=ACME)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "url"]
    assert (await api.get("/v1/subscriptions", headers=ACME)).json() == []


async def test_tenants_never_see_each_others_subscriptions(api):
    acme = (await api.post("/v1/subscriptions", json={"url": "https://a/h"}, headers=ACME)).json()
    assert (await api.get("/v1/subscriptions", headers=GLOBEX)).json() == []
    assert (await api.get(f"/v1/subscriptions/{acme['id']}", headers=GLOBEX)).status_code == 404
    assert (await api.delete(f"/v1/subscriptions/{acme['id']}", headers=GLOBEX)).status_code == 404

    assert (await api.delete(f"/v1/subscriptions/{acme['id']}", headers=ACME)).status_code == 204
    assert (await api.get(f"/v1/subscriptions/{acme['id']}", headers=ACME)).status_code == 404
    assert (await api.get("/v1/subscriptions", headers=ACME)).json() == []
    assert (await api.delete(f"/v1/subscriptions/{acme['id']}", headers=ACME)).status_code == 404


async def test_a_match_from_the_broker_invites_each_person_once_by_webhook(common_settings):
    settings = notifier_settings(common_settings)
    with Receiver() as receiver:
        async with running(settings) as (app, api, producer):
            secret = (await api.post("/v1/subscriptions", json={"url": receiver.url}, headers=ACME)).json()["secret"]
            event = matched("asker", "ann", "bob", "cy", "dee", "eve", participants=("bob",), accepted=True)
            await publish(producer, settings.topic(MATCHES), [event, event])
            await publish(producer, settings.topic(MATCHES), [matched("zed", tenant="globex")])

            await until(lambda: _handled(app, 3), what="the three matches to be handled")

            async def all_delivered():
                found = (await api.get("/v1/invitations?thread_id=t1", headers=ACME)).json()
                states = [d["state"] for inv in found for d in inv["deliveries"]]
                return found if states and all(s == "delivered" for s in states) else None

            invitations = await until(all_delivered, what="every invitation delivered")
            ready = await api.get("/readyz")
            acme_all = (await api.get("/v1/invitations", headers=ACME)).json()
            globex_all = (await api.get("/v1/invitations", headers=GLOBEX)).json()

    assert sorted(inv["person_id"] for inv in invitations) == ["ann", "cy", "dee"]
    assert all(len(inv["deliveries"]) == 1 and inv["deliveries"][0]["attempts"] == 1 for inv in invitations)
    assert sorted(inv["person_id"] for inv in acme_all) == ["ann", "cy", "dee"]
    assert [(inv["person_id"], inv["deliveries"]) for inv in globex_all] == [("zed", [])]
    payloads = [Webhook(secret).verify(r.body, r.headers)["data"] for r in receiver.received()]
    assert sorted(p["person_id"] for p in payloads) == ["ann", "cy", "dee"]
    assert payloads[0]["why"] == "You answered “Vault” (accepted)."
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "database": True,
        "broker": True,
        "consumer": True,
        "posts_consumer": True,
    }


async def test_a_committed_invitation_is_sent_at_once_not_at_the_next_poll(common_settings):
    # Polls ten minutes apart: a webhook within the deadline below was sent because its
    # invitation was committed, not because a poll came round.
    settings = notifier_settings(common_settings, delivery_poll_interval=600, escalation_poll_interval=600)
    with Receiver() as receiver:
        async with running(settings) as (app, api, producer):
            await api.post("/v1/subscriptions", json={"url": receiver.url}, headers=ACME)
            # The first is sent by whichever comes first, the worker's first round or the
            # wake; once it is in, the worker waits for the next poll or a wake.
            await publish(producer, settings.topic(MATCHES), [matched("ann", thread="t1")])
            await receiver.wait_for(1, timeout=30)
            await until(lambda: _idle(app), what="the delivery worker to finish its round")
            await publish(producer, settings.topic(MATCHES), [matched("bob", thread="t2")])
            await receiver.wait_for(2, timeout=30)

    threads = [json.loads(r.body)["data"]["thread_id"] for r in receiver.received()]
    assert threads == ["t1", "t2"]


async def test_a_hung_endpoint_does_not_hold_up_the_next_match(common_settings):
    # Each match's webhooks go out as its batch commits, beside any other still being sent: a
    # round of the polling worker would wait for the hung one, up to the timeout, before the next.
    settings = notifier_settings(common_settings, total_timeout=15, delivery_poll_interval=600)
    with Receiver() as hung, Receiver() as quick:
        hung.hang(60)
        async with running(settings, shutdown_timeout=60) as (app, api, producer):
            await api.post("/v1/subscriptions", json={"url": hung.url}, headers=ACME)
            await api.post("/v1/subscriptions", json={"url": quick.url}, headers=GLOBEX)
            await publish(producer, settings.topic(MATCHES), [matched("ann", thread="t1")])
            await hung.wait_for(1, timeout=30)
            await publish(producer, settings.topic(MATCHES), [matched("bob", thread="t2", tenant="globex")])
            await quick.wait_for(1, timeout=30)
            (first,) = (await api.get("/v1/invitations", headers=ACME)).json()

    assert json.loads(quick.received()[0].body)["data"]["person_id"] == "bob"
    # ann's webhook was still unanswered (its attempt unrecorded) when bob's arrived.
    assert first["deliveries"][0]["attempts"] == 0


async def _idle(app) -> bool:
    return not app.state.notifier.worker.busy


async def _handled(app, count: int) -> bool:
    return app.state.notifier.matches_loop.stats.handled >= count


async def test_a_delivery_queued_before_a_restart_is_sent_after_it(common_settings):
    settings = notifier_settings(common_settings, consume=False)
    with Receiver() as receiver:
        receiver.answer(503)
        async with LifespanManager(create_app(settings)) as manager:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://n") as api:
                await api.post("/v1/subscriptions", json={"url": receiver.url}, headers=ACME)
        # Queued while the notifier is down, as a match handled just before a crash would be.
        db = Database(settings.database_url)
        await invitations.record_match(db, event=matched("ann"), now=utcnow())
        await db.close()

        async with LifespanManager(create_app(settings)) as manager:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://n") as api:

                async def delivered():
                    found = (await api.get("/v1/invitations", headers=ACME)).json()
                    return found if found[0]["deliveries"][0]["state"] == "delivered" else None

                (invitation,) = await until(delivered, what="the queued delivery to be sent")
    assert invitation["deliveries"][0]["attempts"] == 2
    assert [r.headers["webhook-id"] for r in receiver.received()] == [invitation["deliveries"][0]["message_id"]] * 2

