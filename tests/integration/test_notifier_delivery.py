"""Signed webhook delivery against a real HTTP receiver, with the retry schedule kept in the database."""

import asyncio
import json
import time
from datetime import timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.notifier.clock import utcnow
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import AllowList
from services.notifier.policy import InvitePolicy
from services.notifier.store import Database, deliveries, invitations, subscriptions
from shared.embedded_broker import free_port
from tests.support.commits import WriteCommits
from tests.support.events import matched
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.integration

# The receiver listens on loopback, which webhooks may reach only when allow-listed.
LOOPBACK = AllowList.parse("127.0.0.0/8,::1")


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
async def client():
    async with httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        yield http


def worker_for(db: Database, client: httpx.AsyncClient, schedule=(0.05, 0.05)) -> DeliveryWorker:
    return DeliveryWorker(db=db, client=client, schedule=schedule, total_timeout=5.0, allow=LOOPBACK)


async def invite(db: Database, url: str, *people: str) -> tuple[str, list]:
    """A subscription to `url` and invitations of `people`: returns the secret and their deliveries."""
    subscription = await subscriptions.create(db, tenant="acme", url=url, description=None, now=utcnow())
    await invitations.record_match(db, event=matched(*people, accepted=True), now=utcnow())
    views = await invitations.list_for(db, tenant="acme")
    return subscription.secret, [d for v in views for d in v.deliveries]


async def deliver_until_settled(worker: DeliveryWorker, db: Database, delivery_id: str, timeout: float = 10.0):
    """Run the worker in bursts until the delivery is delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        await worker.deliver_due()
        found = await deliveries.get(db, delivery_id)
        if found.state != "pending":
            return found
        assert time.monotonic() < deadline, f"delivery still pending after {timeout}s: {found.last_error}"
        await asyncio.sleep(0.02)  # the next retry is due in 50 ms


async def test_a_delivered_webhook_is_sent_once_and_verifies(db, receiver, client):
    secret, (pending,) = await invite(db, receiver.url, "ann")
    worker = worker_for(db, client)

    assert await worker.deliver_due() == 1
    assert await worker.deliver_due() == 0

    (request,) = receiver.received()
    body = Webhook(secret).verify(request.body, request.headers)
    assert request.headers["webhook-id"] == pending.message_id and pending.message_id.startswith("msg_")
    assert request.headers["content-type"] == "application/json"
    assert body["type"] == "invitation.created" and body["data"]["person_id"] == "ann"
    assert body["data"]["why"] == "You answered “Vault” (accepted)."
    done = await deliveries.get(db, pending.id)
    assert (done.state, done.attempts, done.last_status) == ("delivered", 1, 200)
    assert done.delivered_at is not None
    (attempt,) = await deliveries.attempts_of(db, pending.id)
    assert attempt.status_code == 200 and attempt.error is None and attempt.duration_ms >= 0


async def test_failures_are_retried_with_the_same_message_and_bytes(db, receiver, client):
    secret, (pending,) = await invite(db, receiver.url, "ann")
    receiver.answer(500, 500)

    done = await deliver_until_settled(worker_for(db, client), db, pending.id)

    assert (done.state, done.attempts, done.last_status) == ("delivered", 3, 200)
    requests = receiver.received()
    assert len(requests) == 3
    assert {r.headers["webhook-id"] for r in requests} == {pending.message_id}
    assert len({r.body for r in requests}) == 1
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    attempts = await deliveries.attempts_of(db, pending.id)
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert attempts[0].error == "HTTP 500"


async def test_a_delivery_fails_for_good_when_the_schedule_is_exhausted(db, receiver, client):
    _, (pending,) = await invite(db, receiver.url, "ann")
    receiver.answer(500, 502, 503, 200)

    done = await deliver_until_settled(worker_for(db, client), db, pending.id)

    assert (done.state, done.attempts, done.last_status, done.next_attempt_at) == ("failed", 3, 503, None)
    assert len(receiver.received()) == 3


async def test_410_disables_the_subscription_and_fails_its_deliveries(db, receiver, client):
    _, pending = await invite(db, receiver.url, "ann", "bob")
    receiver.answer(410)
    worker = DeliveryWorker(db=db, client=client, schedule=(0.05,), total_timeout=5.0, batch_size=1, allow=LOOPBACK)

    await worker.deliver_due()

    assert len(receiver.received()) == 1
    states = [(await deliveries.get(db, d.id)).state for d in pending]
    assert states == ["failed", "failed"]
    (subscription,) = await subscriptions.list_for(db, tenant="acme")
    assert subscription.disabled_at is not None and "410" in subscription.disabled_reason
    # New matches queue nothing for the disabled endpoint.
    await invitations.record_match(db, event=matched("cy"), now=utcnow())
    assert await worker.deliver_due() == 0


async def test_retry_after_on_429_delays_the_next_attempt(db, receiver, client):
    _, (pending,) = await invite(db, receiver.url, "ann")
    receiver.answer(429, retry_after="2")
    worker = worker_for(db, client)

    await worker.deliver_due()
    waiting = await deliveries.get(db, pending.id)
    first = receiver.received()[0]
    assert waiting.state == "pending" and waiting.last_status == 429
    assert waiting.next_attempt_at >= utcnow() + timedelta(seconds=1.5)
    assert await worker.deliver_due() == 0

    assert await worker.deliver_due(now=utcnow() + timedelta(seconds=3)) == 1
    assert (await deliveries.get(db, pending.id)).state == "delivered"
    assert receiver.received()[1].headers["webhook-id"] == first.headers["webhook-id"]


async def test_redirects_are_not_followed(db, receiver, client):
    _, (pending,) = await invite(db, receiver.url, "ann")
    receiver.redirect(receiver.url.replace("/hooks", "/elsewhere"))

    await worker_for(db, client).deliver_due()

    assert [r.path for r in receiver.received()] == ["/hooks"]
    found = await deliveries.get(db, pending.id)
    assert (found.state, found.last_status, found.last_error) == ("pending", 307, "HTTP 307")


async def test_an_endpoint_that_does_not_answer_is_retried(db, client):
    _, (pending,) = await invite(db, f"http://127.0.0.1:{free_port()}/hooks", "ann")

    await worker_for(db, client).deliver_due()

    found = await deliveries.get(db, pending.id)
    assert (found.state, found.attempts, found.last_status) == ("pending", 1, None)
    assert "ConnectError" in found.last_error
    body = json.loads(
        (await deliveries.claim_due(db, now=utcnow() + timedelta(seconds=1), limit=1, lease=timedelta(seconds=1)))[
            0
        ].payload
    )
    assert body["data"]["person_id"] == "ann"


async def test_a_burst_never_sends_a_retry_that_fell_due_while_it_ran(db, receiver, client):
    _, (pending,) = await invite(db, receiver.url, "ann")
    receiver.answer(500, 200)
    started = utcnow()
    reads = iter(started + timedelta(seconds=10 * n) for n in range(1000))
    # Every read of the clock is 10 s later: the 50 ms retry is due long before the burst ends.
    worker = DeliveryWorker(db=db, client=client, schedule=(0.05,), total_timeout=5.0, allow=LOOPBACK,
                            clock=lambda: next(reads))

    assert await worker.deliver_due() == 1

    assert len(receiver.received()) == 1
    found = await deliveries.get(db, pending.id)
    assert (found.state, found.attempts, found.last_status) == ("pending", 1, 500)
    assert await worker.deliver_due() == 1
    assert (await deliveries.get(db, pending.id)).state == "delivered"


async def test_the_backlog_counts_what_waits_to_be_sent_and_the_endpoints_that_fail(db, receiver, client):
    subscription = await subscriptions.create(db, tenant="acme", url=receiver.url, description=None, now=utcnow())
    now = utcnow()
    await invitations.record_match(db, event=matched("ann", thread="old"), now=now - timedelta(minutes=3))
    await invitations.record_match(db, event=matched("bob", thread="new"), now=now - timedelta(seconds=10))

    found = await deliveries.backlog(db, now=now, overdue_after=timedelta(minutes=1))
    assert (found.pending, found.due, found.overdue) == (2, 2, 1)
    assert found.oldest_due_seconds == pytest.approx(180, abs=1)
    assert (found.endpoints_disabled, found.endpoints_failing) == (0, 0)

    receiver.answer(500, 500)  # both attempts fail: retried later, the endpoint failing meanwhile
    assert await worker_for(db, client, schedule=(3600,)).deliver_due() == 2
    found = await deliveries.backlog(db, now=utcnow(), overdue_after=timedelta(minutes=1))
    assert (found.pending, found.due, found.overdue, found.oldest_due_seconds) == (2, 0, 0, 0.0)
    assert (found.endpoints_disabled, found.endpoints_failing) == (0, 1)

    receiver.answer(410)  # the next, a new invitation's, is told Gone: the endpoint is disabled
    await invitations.record_match(db, event=matched("cy", thread="third"), now=utcnow())
    assert await worker_for(db, client).deliver_due() == 1
    found = await deliveries.backlog(db, now=utcnow(), overdue_after=timedelta(minutes=1))
    assert (found.pending, found.endpoints_disabled, found.endpoints_failing) == (0, 1, 0)
    assert (await subscriptions.get(db, tenant="acme", subscription_id=subscription.id)).disabled_at is not None


async def test_the_attempts_of_one_round_are_recorded_in_one_commit(db, receiver, client):
    _, pending = await invite(db, receiver.url, "ann", "bob", "cy")
    receiver.answer(200, 500)
    writes = WriteCommits(db.engine)

    assert await worker_for(db, client).deliver_due() == 3

    writes.close()
    assert writes.count == 2  # the claim, then every outcome: two syncs on SQLite, not one per webhook
    found = [await deliveries.get(db, d.id) for d in pending]
    assert sorted((d.state, d.attempts) for d in found) == [("delivered", 1), ("delivered", 1), ("pending", 1)]
    assert len(receiver.received()) == 3


async def test_handed_over_deliveries_are_sent_without_a_claim_or_a_round(db, receiver, client):
    await subscriptions.create(db, tenant="acme", url=receiver.url, description=None, now=utcnow())
    worker = worker_for(db, client)
    async with invitations.recording(db, events=[], now=utcnow(), lease=worker.lease) as recorder:
        await recorder.record(matched("ann", "bob", accepted=True), policy=InvitePolicy())
    writes = WriteCommits(db.engine)

    worker.send_now(recorder.leased)
    await until(lambda: _settled(worker), what="the handed-over deliveries to be sent")

    writes.close()
    assert writes.count == 1  # their outcomes only: the claim was made with the invitations
    assert sorted(json.loads(r.body)["data"]["person_id"] for r in receiver.received()) == ["ann", "bob"]
    assert [(await deliveries.get(db, d.id)).state for d in recorder.leased] == ["delivered", "delivered"]
    assert await worker.deliver_due() == 0


async def _settled(worker: DeliveryWorker) -> bool:
    return not worker.busy


async def test_a_hung_endpoint_holds_up_the_outcomes_of_no_other(db, client):
    with Receiver() as hung, Receiver() as quick:
        hung.hang(30)
        for receiver in (hung, quick):
            await subscriptions.create(db, tenant="acme", url=receiver.url, description=None, now=utcnow())
        await invitations.record_match(db, event=matched("ann"), now=utcnow())
        worker = DeliveryWorker(db=db, client=client, schedule=(60,), total_timeout=10.0, allow=LOOPBACK)
        (view,) = await invitations.list_for(db, tenant="acme")
        by_url = {(await subscriptions.get(db, tenant="acme", subscription_id=d.subscription_id)).url: d.id
                  for d in view.deliveries}

        burst = asyncio.create_task(worker.deliver_due())

        async def quick_delivered():
            return (await deliveries.get(db, by_url[quick.url])).state == "delivered"

        await until(quick_delivered, timeout=30, what="the quick endpoint's outcome to be recorded")
        # Recorded while the other endpoint of the same round had not answered yet.
        assert (await deliveries.get(db, by_url[hung.url])).attempts == 0
        assert await burst == 2
