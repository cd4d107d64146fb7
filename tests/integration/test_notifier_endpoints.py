"""Webhook endpoints over their life: SSRF checks, secret rotation, 5 days of failures, enable and replay."""

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings
from services.notifier.store import invitations
from tests.support.clocks import ManualClock
from tests.support.events import matched
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

ACME = {"authorization": "Bearer acme-key"}
PUBLIC = "93.184.215.14"


class Dns:
    """A resolver the test controls: names map to addresses, and can be changed (rebinding)."""

    def __init__(self, **table: list[str]) -> None:
        self.table = {name.replace("_", "."): addresses for name, addresses in table.items()}

    async def __call__(self, host: str, port: int) -> list[str]:
        if host in ("127.0.0.1", "localhost"):
            return ["127.0.0.1"]
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


@pytest.fixture
async def notifier(common_settings, request):
    """(api client, app, clock, dns) for a notifier without a broker, allow-listing loopback."""
    clock, dns = ManualClock(datetime.now(UTC)), Dns(hooks_example_com=[PUBLIC], intranet_corp=["10.0.0.7"])
    overrides = getattr(request, "param", {})
    settings = NotifierSettings(
        **common_settings.model_dump(), consume=False, retry_schedule="1,1,1,1,1,1,1,1,1,1",
        allowed_hosts="127.0.0.0/8", total_timeout=1.0, **overrides,
    )
    app = create_app(settings, clock=clock, resolver=dns)
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://n") as api:
            yield api, app, clock, dns


async def subscribe(api, url: str) -> dict:
    answer = await api.post("/v1/subscriptions", json={"url": url}, headers=ACME)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_inside_urls_are_refused_naming_the_field_and_the_allow_list_admits_loopback(notifier):
    api, *_ = notifier
    inside = ("http://10.1.2.3/h", "http://169.254.169.254/latest", "https://intranet.corp/h", "http://[::1]/h",
              "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::]/", "http://[2002:a00:1::]/", "http://[2002:c0a8:101::]/")
    for url in inside:
        refused = await api.post("/v1/subscriptions", json={"url": url}, headers=ACME)
        assert refused.status_code == 422, url
        assert refused.json()["detail"][0]["loc"] == ["body", "url"]
    assert "private" in refused.json()["detail"][0]["msg"] or "loopback" in refused.json()["detail"][0]["msg"]
    assert (await api.get("/v1/subscriptions", headers=ACME)).json() == []
    await subscribe(api, "https://hooks.example.com/in")
    await subscribe(api, "http://127.0.0.1:9/h")  # allow-listed by NOTIFIER_ALLOWED_HOSTS
    assert len((await api.get("/v1/subscriptions", headers=ACME)).json()) == 2


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("10.0.0.7", "10.0.0.7, a private address"),
        # Loopback is allow-listed here, but not loopback reached through a 6to4 relay or NAT64.
        ("2002:7f00:1::", "2002:7f00:1:: (6to4 127.0.0.1), a loopback address"),
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe (NAT64 169.254.169.254), a metadata address"),
    ],
)
async def test_a_name_that_resolves_inside_at_delivery_is_refused_without_a_request(notifier, address, refusal):
    api, app, clock, dns = notifier
    with Receiver() as receiver:
        await subscribe(api, "https://hooks.example.com/in")
        dns.table["hooks.example.com"] = [address]  # rebinding: the name now points inside
        await invitations.record_match(app.state.notifier.db, event=matched("ann"), now=clock())
        await app.state.notifier.worker.deliver_due()
        (delivery,) = (await api.get("/v1/deliveries", headers=ACME)).json()
    assert receiver.received() == []
    assert delivery["state"] == "pending" and delivery["attempt_log"][0]["status_code"] is None
    assert f"refused: host hooks.example.com resolves to {refusal}" in delivery["attempt_log"][0]["error"]


async def test_during_a_rotation_both_signatures_are_sent_and_each_verifies(notifier):
    api, app, clock, _ = notifier
    with Receiver() as receiver:
        old = await subscribe(api, receiver.url)
        rotated = await api.post(f"/v1/subscriptions/{old['id']}/rotate-secret", headers=ACME)
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != old["secret"] and rotated.json()["previous_secret_valid_until"]
        await invitations.record_match(app.state.notifier.db, event=matched("ann"), now=clock())
        await app.state.notifier.worker.deliver_due()
        clock.now += timedelta(hours=25)  # the overlap is over: only the new secret signs
        await invitations.record_match(app.state.notifier.db, event=matched("bob", thread="t2"), now=clock())
        await app.state.notifier.worker.deliver_due()
        during, after = receiver.received()

    signatures = during.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret, signature in zip((new_secret, old["secret"]), signatures, strict=True):
        Webhook(secret).verify(during.body, {**during.headers, "webhook-signature": signature})
    with pytest.raises(WebhookVerificationError):
        Webhook(old["secret"]).verify(during.body, {**during.headers, "webhook-signature": signatures[0]})
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old["secret"]).verify(after.body, after.headers)
    assert (await api.post("/v1/subscriptions/sub_nope/rotate-secret", headers=ACME)).status_code == 404


async def test_five_days_of_failures_disable_the_endpoint_then_enable_and_replay_resend_with_the_same_ids(notifier):
    api, app, clock, _ = notifier
    start = clock.now
    with Receiver() as receiver:
        subscription = await subscribe(api, receiver.url)
        receiver.answer(*[500] * 100)
        await invitations.record_match(app.state.notifier.db, event=matched("ann"), now=clock())
        await app.state.notifier.worker.deliver_due()
        for day in range(1, 6):  # a new failing delivery every day keeps the run of failures going
            clock.now = start + timedelta(days=day)
            await invitations.record_match(
                app.state.notifier.db, event=matched(f"p{day}", thread=f"t{day}"), now=clock()
            )
            await app.state.notifier.worker.deliver_due()
        state = (await api.get(f"/v1/subscriptions/{subscription['id']}", headers=ACME)).json()
        # Missed while disabled: stored as failed, never sent.
        clock.now += timedelta(hours=1)
        await invitations.record_match(app.state.notifier.db, event=matched("late", thread="t9"), now=clock())
        failed = (
            await api.get(f"/v1/deliveries?subscription_id={subscription['id']}&state=failed", headers=ACME)
        ).json()
        sent_while_failing = len(receiver.received())

        refused = await api.post(
            f"/v1/subscriptions/{subscription['id']}/replay", params={"since": start.isoformat()}, headers=ACME
        )
        enabled = (await api.post(f"/v1/subscriptions/{subscription['id']}/enable", headers=ACME)).json()
        receiver.answers.clear()
        replayed = await api.post(
            f"/v1/subscriptions/{subscription['id']}/replay", params={"since": start.isoformat()}, headers=ACME
        )
        await app.state.notifier.worker.deliver_due()
        # The replay also woke the running worker: whichever sends, each arrives once.
        resent = (await receiver.wait_for(sent_while_failing + 7))[sent_while_failing:]
        delivered = (await api.get("/v1/deliveries?state=delivered", headers=ACME)).json()
        bad_state = await api.get("/v1/deliveries?state=lost", headers=ACME)
        naive = await api.post(
            f"/v1/subscriptions/{subscription['id']}/replay", params={"since": "2026-01-01T00:00:00"}, headers=ACME
        )

    assert state["state"] == "disabled" and state["disabled_reason"].startswith("failing for 5 days")
    assert state["failing_since"] is not None
    assert sent_while_failing >= 6 and len(failed) == 7
    assert failed[0]["last_error"].startswith("endpoint disabled")
    assert all(d["attempt_log"][0]["error"] == "HTTP 500" for d in failed[1:])
    assert refused.status_code == 409
    assert enabled["state"] == "active" and enabled["disabled_reason"] is None
    assert replayed.status_code == 200 and replayed.json()["replayed"] == 7
    assert sorted(r.headers["webhook-id"] for r in resent) == sorted(d["message_id"] for d in failed)
    assert len(delivered) == 7
    assert bad_state.status_code == 422 and bad_state.json()["detail"][0]["loc"] == ["query", "state"]
    assert naive.status_code == 422 and naive.json()["detail"][0]["loc"] == ["query", "since"]


async def test_a_hung_endpoint_times_out_and_is_retried(notifier):
    api, app, clock, _ = notifier
    with Receiver() as receiver:
        receiver.hang(3.0)
        subscription = await subscribe(api, receiver.url)
        await invitations.record_match(app.state.notifier.db, event=matched("ann"), now=clock())
        await app.state.notifier.worker.deliver_due()
        (pending,) = (await api.get(f"/v1/deliveries?subscription_id={subscription['id']}", headers=ACME)).json()
        clock.now += timedelta(seconds=2)
        await app.state.notifier.worker.deliver_due(now=clock.now)
        (done,) = (await api.get("/v1/deliveries?invitation_id=" + pending["invitation_id"], headers=ACME)).json()
    assert pending["state"] == "pending" and "Timeout" in pending["attempt_log"][0]["error"]
    assert pending["attempt_log"][0]["duration_ms"] >= 900
    assert done["state"] == "delivered" and [a["status_code"] for a in done["attempt_log"]] == [None, 200]
    assert len({r.headers["webhook-id"] for r in receiver.received()}) == 1


def test_standard_webhooks_secrets_decode():
    # The receiver side needs only the secret it was given; both forms the spec allows verify.
    key = base64.b64encode(b"k" * 32).decode()
    assert Webhook("whsec_" + key)._whsecret == Webhook(key)._whsecret
