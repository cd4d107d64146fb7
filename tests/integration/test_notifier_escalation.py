"""The invite policy over time: escalation, its stop conditions, preferences and explained decisions."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.notifier.app import create_app
from services.notifier.consumer import posts_handler
from services.notifier.escalation import EscalationWorker
from services.notifier.policy import InvitePolicy, Policies
from services.notifier.settings import NotifierSettings
from services.notifier.store import Database, invitations, subscriptions, threads
from shared.events import (
    InvitationResponded,
    Post,
    PostKind,
    PostUpserted,
    decode_event,
)
from shared.kafka import make_producer, publish
from shared.topics import MATCHES, POSTS, RESPONSES
from tests.support.clocks import ManualClock
from tests.support.events import matched
from tests.support.topics import read_records
from tests.support.waiting import until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = InvitePolicy(initial=3, total=6, escalation_delay=timedelta(hours=4))
ACME = {"authorization": "Bearer acme-key"}


def reply(author: str, *, post="r1", thread="t1", accepted=False) -> PostUpserted:
    return PostUpserted(
        tenant="acme",
        data=Post(id=post, tenant="acme", thread_id=thread, author_id=author, kind=PostKind.ANSWER, body="try this",
                  created_at=T0, accepted=accepted),
    )


@pytest.fixture
async def db(db):
    """The database with acme's subscription."""
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=T0)
    return db


def escalator(db: Database, wakes: list | None = None, policy: InvitePolicy = POLICY) -> EscalationWorker:
    return EscalationWorker(
        db=db, policies=Policies(policy, {}), on_invited=lambda: (wakes if wakes is not None else []).append(1)
    )


async def invited(db: Database, thread="t1") -> list[str]:
    found = await threads.decisions(db, tenant="acme", thread_id=thread)
    return [i.person_id for i in found.invitations]


async def test_an_unanswered_thread_escalates_after_the_delay_up_to_the_total(db):
    await invitations.record_match(db, event=matched(*"abcdefgh"), policy=POLICY, now=T0)
    wakes: list = []
    worker = escalator(db, wakes)

    assert await worker.escalate_due(now=T0 + timedelta(hours=3, minutes=59)) == 0
    assert await invited(db) == ["a", "b", "c"]
    assert await worker.escalate_due(now=T0 + timedelta(hours=4)) == 3
    assert await invited(db) == ["a", "b", "c", "d", "e", "f"]
    assert await worker.escalate_due(now=T0 + timedelta(hours=9)) == 0
    found = await threads.decisions(db, tenant="acme", thread_id="t1")
    assert [i.round for i in found.invitations] == [1, 1, 1, 2, 2, 2]
    assert (found.state.closed_reason, found.state.escalate_at) == ("limit_reached", None)
    assert len(wakes) == 1


async def test_a_reply_from_an_invitee_stops_escalation_but_a_strangers_does_not(db):
    roomy = replace(POLICY, total=9)
    await invitations.record_match(db, event=matched(*"abcdefghijk"), policy=roomy, now=T0)
    handle = posts_handler(db)
    await handle([reply("stranger", post="r0")])
    worker = escalator(db, policy=roomy)
    assert await worker.escalate_due(now=T0 + timedelta(hours=4)) == 3  # a stranger's reply changes nothing

    await handle([reply("e", post="r1"), reply("e", post="r1")])
    assert await worker.escalate_due(now=T0 + timedelta(hours=8)) == 0
    state = (await threads.decisions(db, tenant="acme", thread_id="t1")).state
    assert state.closed_reason == "invitee_replied"


async def test_an_accepted_answer_stops_escalation(db):
    await invitations.record_match(db, event=matched(*"abcdefgh"), policy=POLICY, now=T0)
    handle = posts_handler(db)
    await handle([reply("stranger")])
    await handle([reply("stranger", accepted=True)])  # the same post, accepted later
    assert await escalator(db).escalate_due(now=T0 + timedelta(hours=4)) == 0
    assert (await threads.decisions(db, tenant="acme", thread_id="t1")).state.closed_reason == "accepted_answer"
    assert await invited(db) == ["a", "b", "c"]


async def test_a_thread_with_no_one_left_to_invite_stops_escalating(db):
    await invitations.record_match(db, event=matched("a", "b"), policy=POLICY, now=T0)
    assert await escalator(db).escalate_due(now=T0 + timedelta(hours=4)) == 0
    assert (await threads.decisions(db, tenant="acme", thread_id="t1")).state.closed_reason == "no_candidates"


async def test_escalation_stops_when_everyone_left_is_not_close_enough(db):
    close = matched("a", "b", "c").data.candidates
    far = tuple(
        c.model_copy(update={"person_id": p, "score": 0.5, "closeness": 0.1})
        for p, c in zip("def", close, strict=True)
    )
    event = matched("a")
    event = event.model_copy(update={"data": event.data.model_copy(update={"candidates": close + far})})
    await invitations.record_match(db, event=event, policy=POLICY, now=T0)

    assert await escalator(db).escalate_due(now=T0 + timedelta(hours=4)) == 0

    found = await threads.decisions(db, tenant="acme", thread_id="t1")
    assert found.state.closed_reason == "no_one_close_enough"
    assert await invited(db) == ["a", "b", "c"]
    assert {s.person_id for s in found.skips if s.reason == "not_close_enough"} == set("def")


async def test_the_daily_cap_holds_across_threads(db):
    for n in range(4):
        await invitations.record_match(
            db, event=matched("ann", "bob", thread=f"t{n}"), policy=POLICY, now=T0 + timedelta(minutes=n)
        )
    assert [await invited(db, f"t{n}") for n in range(4)] == [["ann", "bob"]] * 3 + [[]]
    skipped = (await threads.decisions(db, tenant="acme", thread_id="t3")).skips
    assert {(s.person_id, s.reason) for s in skipped} == {("ann", "daily_cap"), ("bob", "daily_cap")}
    # A day later the cap has room again.
    await invitations.record_match(
        db, event=matched("ann", thread="t9"), policy=POLICY, now=T0 + timedelta(days=1, minutes=5)
    )
    assert await invited(db, "t9") == ["ann"]


async def test_the_api_explains_each_decision_and_publishes_responses(common_settings):
    clock = ManualClock(T0)
    settings = NotifierSettings(**common_settings.model_dump(), max_invites_per_thread=2, escalation_delay=3600)
    app = create_app(settings, clock=clock)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://n") as api:
            out = await api.put("/v1/people/ann/preferences", json={"opted_out": True}, headers=ACME)
            assert out.status_code == 200 and out.json()["opted_out"] is True
            snooze = {"snoozed_until": (T0 + timedelta(days=2)).isoformat()}
            assert (await api.put("/v1/people/bob/preferences", json=snooze, headers=ACME)).status_code == 200
            bad = await api.put("/v1/people/cy/preferences", json={"max_per_day": -1}, headers=ACME)
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "max_per_day"]
            assert (await api.get("/v1/people/cy/preferences", headers=ACME)).json()["max_per_day"] is None

            producer = make_producer(settings)
            await producer.start()
            try:
                await publish(
                    producer, settings.topic(MATCHES), [matched("asker", "ann", "bob", "cy", "dee", "eve", "fay")]
                )
                await until(lambda: _handled(app.state.notifier.matches_loop), what="the match")
                clock.now = T0 + timedelta(hours=1)
                assert await app.state.notifier.escalation.escalate_due() == 2
                await publish(producer, settings.topic(POSTS), [reply("eve")])
                await until(lambda: _handled(app.state.notifier.posts_loop), what="the reply")
            finally:
                await producer.stop()
            clock.now = T0 + timedelta(hours=2)
            assert await app.state.notifier.escalation.escalate_due() == 0

            decisions = (await api.get("/v1/threads/t1/invitations", headers=ACME)).json()
            first = decisions["invited"][0]
            answered = await api.post(
                f"/v1/invitations/{first['invitation_id']}/response", json={"response": "answered"}, headers=ACME
            )
            wrong = await api.post(
                f"/v1/invitations/{first['invitation_id']}/response", json={"response": "maybe"}, headers=ACME
            )
            other = await api.post(
                f"/v1/invitations/{first['invitation_id']}/response",
                json={"response": "declined"},
                headers={"authorization": "Bearer globex-key"},
            )
            await app.state.notifier.publisher.publish_pending()
            after = (await api.get("/v1/threads/t1/invitations", headers=ACME)).json()

    assert [(i["person_id"], i["round"]) for i in decisions["invited"]] == [
        ("cy", 1),
        ("dee", 1),
        ("eve", 2),
        ("fay", 2),
    ]
    assert first["why"] == "You answered “Vault”." and first["score"] == pytest.approx(0.7)
    assert {(s["person_id"], s["reason"]) for s in decisions["skipped"]} == {
        ("asker", "asker"), ("ann", "opted_out"), ("bob", "snoozed"),
        ("cy", "already_invited"), ("dee", "already_invited"),
    }
    assert decisions["escalation"] == {"rounds": 2, "next_escalation_at": None, "closed_reason": "invitee_replied"}
    assert answered.status_code == 201 and answered.json()["response"] == "answered"
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "response"]
    assert other.status_code == 404
    assert [r["response"] for r in after["invited"][0]["responses"]] == ["answered"]

    [record] = await read_records(settings, settings.topic(RESPONSES), 1)
    event = decode_event(record.value)
    assert isinstance(event, InvitationResponded) and str(event.id) == answered.json()["id"]
    assert (event.data.person_id, event.data.response, event.data.question_post_id) == ("cy", "answered", "t1-q")


async def _handled(loop) -> bool:
    return loop.stats.handled >= 1
