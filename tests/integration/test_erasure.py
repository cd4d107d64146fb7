"""Erasing a person: ingest publishes it, the matcher and the notifier forget them, nobody else."""

import asyncio
import hashlib
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from standardwebhooks.webhooks import Webhook

from services.ingest.app import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.matcher.app import create_app as matcher_app
from services.matcher.index import EdgeIndex
from services.matcher.settings import MatcherSettings
from services.notifier.app import create_app as notifier_app
from services.notifier.consumer import posts_handler
from services.notifier.models import (
    Base,
    Delivery as DeliveryRow,
    DeliveryAttempt,
    DeliveryState,
    Invitation,
    PersonErasure,
    ThreadReply,
    ThreadState,
)
from services.notifier.policy import InvitePolicy
from services.notifier.settings import NotifierSettings
from services.notifier.store import (
    Database,
    deliveries,
    erasure,
    invitations,
    people,
    responses,
    subscriptions,
    threads,
)
from services.notifier.store.deliveries import Outcome
from services.notifier.store.erasure import Erasure
from shared.events import (
    Candidate,
    ExpertsMatched,
    PersonErased,
    PersonRef,
    Post,
    PostKind,
    PostUpserted,
    ResponseKind,
)
from shared.kafka import make_producer, publish
from shared.topics import MATCHES
from tests.fakes import FakeEmbedder
from tests.support.clocks import ManualClock
from tests.support.events import matched as a_match
from tests.support.receiver import Receiver
from tests.support.waiting import until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = InvitePolicy(initial=2, total=4, escalation_delay=timedelta(hours=1))
ACME = {"authorization": "Bearer acme-key"}
GLOBEX = {"authorization": "Bearer globex-key"}


def matched(*people: str, posted_at: datetime = T0 - timedelta(days=30), **options) -> ExpertsMatched:
    """A match whose evidence was posted `posted_at`: by default a month before anything here happens."""
    return a_match(*people, posted_at=posted_at, **options)


def erased(person_id: str, tenant: str = "acme", at: datetime | None = None) -> PersonErased:
    return PersonErased(tenant=tenant, data=PersonRef(person_id=person_id), **({"time": at} if at else {}))


def reply(author: str, *, thread: str) -> PostUpserted:
    post = Post(id=f"{thread}-{author}", tenant="acme", thread_id=thread, author_id=author, kind=PostKind.ANSWER,
                body="try the probe", created_at=T0)
    return PostUpserted(tenant="acme", data=post)


# --- the notifier's store, on SQLite and PostgreSQL ---------------------------------------------


@pytest.fixture
async def db(db):
    """The database with a subscription for each tenant."""
    for tenant in ("acme", "globex"):
        await subscriptions.create(db, tenant=tenant, url=f"http://{tenant}/hook", description=None, now=T0)
    return db


async def test_the_notifier_forgets_everything_of_an_erased_person_and_only_that(db):
    await invitations.record_match(db, event=matched("kim", "pat", "ann", thread="t1"), policy=POLICY, now=T0)
    await people.put_preferences(
        db,
        tenant="acme",
        person_id="kim",
        opted_out=False,
        snoozed_until=T0 + timedelta(days=9),
        max_per_day=None,
        max_per_week=None,
        now=T0,
    )
    await invitations.record_match(db, event=matched("kim", "lee", "ann", "pat", thread="t2"), policy=POLICY, now=T0)
    await invitations.record_match(db, event=matched("pat", thread="t3", asker="kim"), policy=POLICY, now=T0)
    await invitations.record_match(db, event=matched("kim", thread="t1", tenant="globex"), policy=POLICY, now=T0)
    [kims] = [i for i in await invitations.list_for(db, tenant="acme") if i.invitation.person_id == "kim"]
    await responses.record(db, invitation=kims.invitation, response=ResponseKind.ACCEPTED, now=T0)
    await _fail_every_first_attempt(db)
    handle = posts_handler(db)
    await handle([reply("kim", thread="t2"), reply("lee", thread="t2")])
    assert "kim" in [s.person_id for s in (await threads.decisions(db, tenant="acme", thread_id="t2")).skips]

    await handle([erased("kim")])

    acme = await invitations.list_for(db, tenant="acme")
    assert sorted((i.invitation.thread_id, i.invitation.person_id) for i in acme) == [
        ("t1", "pat"), ("t2", "ann"), ("t2", "lee"), ("t3", "pat")
    ]
    for thread in ("t1", "t2"):
        found = await threads.decisions(db, tenant="acme", thread_id=thread)
        assert "kim" not in [s.person_id for s in found.skips] + [r.person_id for r in found.responses]
        assert "kim" not in [c["person_id"] for c in found.state.candidates]
    assert (await threads.decisions(db, tenant="acme", thread_id="t3")).state is None  # kim asked it
    assert await people.get_preferences(db, tenant="acme", person_id="kim") is None
    assert await deliveries.search(db, tenant="acme", invitation_id=kims.invitation.id) == []
    async with db.sessions() as session:
        attempted = set((await session.scalars(sa.select(DeliveryAttempt.delivery_id))).all())
        assert (
            await session.scalar(sa.select(sa.func.count()).where(DeliveryRow.invitation_id == kims.invitation.id)) == 0
        )
        assert set((await session.scalars(sa.select(ThreadReply.person_id))).all()) == {"lee"}
    due = await deliveries.claim_due(db, now=T0 + timedelta(days=1), limit=100, lease=timedelta(minutes=1))
    assert len(due) == 5  # pat, ann, lee, pat, and globex's kim: nothing for acme's kim
    assert attempted == {d.id for d in due}  # their attempts stay, kim's went with kim's delivery
    [globex] = await invitations.list_for(db, tenant="globex")
    assert globex.invitation.person_id == "kim" and len(globex.deliveries) == 1

    assert await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=datetime.now(UTC)) == Erasure()
    later = T0 + timedelta(hours=2)
    for thread in ("t1", "t2"):
        await threads.escalate(db, tenant="acme", thread_id=thread, policy=POLICY, now=later)
    assert "kim" not in [i.invitation.person_id for i in await invitations.list_for(db, tenant="acme")]


async def test_a_match_ranked_before_an_erasure_but_handled_after_it_invites_nobody_erased(db):
    # Handled a minute after it was asked for: the later moment counts.
    handle = posts_handler(db, clock=ManualClock(T0 + timedelta(minutes=2)))
    await handle([erased("kim", at=T0 + timedelta(minutes=1)), erased("zoe", at=T0)])
    await posts_handler(db, clock=ManualClock(T0 - timedelta(minutes=2)))(
        [erased("kim", tenant="globex", at=T0 - timedelta(minutes=1))]
    )

    stale = matched("kim", "pat", "zoe", "ann", "lee", thread="t1", participants=("zoe", "max"), at=T0)
    created = await invitations.record_match(db, event=stale, policy=POLICY, now=T0 + timedelta(minutes=3))
    asked_by_kim = matched("pat", thread="t2", asker="kim", at=T0)
    assert await invitations.record_match(db, event=asked_by_kim, policy=POLICY, now=T0 + timedelta(minutes=3)) == []
    # Globex's kim, erased a minute before this match was ranked, has posted again since.
    again = matched("kim", thread="t1", tenant="globex", at=T0, posted_at=T0 - timedelta(seconds=30))
    globex = await invitations.record_match(db, event=again, policy=POLICY, now=T0)
    escalated = await threads.escalate(db, tenant="acme", thread_id="t1", policy=POLICY, now=T0 + timedelta(hours=2))

    assert [i.person_id for i in created] == ["pat", "ann"]
    assert [i.person_id for i in escalated] == ["lee"]
    found = await threads.decisions(db, tenant="acme", thread_id="t1")
    assert found.state.participants == ["max"]
    assert [c["person_id"] for c in found.state.candidates] == ["pat", "ann", "lee"]
    # Not even a record of passing them over: the only skips are of those invited before.
    assert sorted((s.person_id, s.reason) for s in found.skips) == [
        ("ann", "already_invited"),
        ("pat", "already_invited"),
    ]
    assert (await threads.decisions(db, tenant="acme", thread_id="t2")).state is None
    # Ranked after their erasure, on a post made since: it invites them.
    assert [i.person_id for i in globex] == ["kim"]
    # What is kept of acme's erased people: their erasure's time, under a hash of tenant and id.
    assert set(await _rows_mentioning(db, "kim")) == {
        "invitations: globex",
        "deliveries: globex",
        "thread_states: globex",
    }
    assert await _rows_mentioning(db, "zoe") == []
    assert await _erasures(db) == {
        ("acme", _sha256("acme/kim")): T0 + timedelta(minutes=2),
        ("acme", _sha256("acme/zoe")): T0 + timedelta(minutes=2),
        ("globex", _sha256("globex/kim")): T0 - timedelta(minutes=1),
    }


async def test_a_match_ranked_after_the_erasure_invites_them_again_until_erased_again(db):
    erased_at = T0 + timedelta(minutes=1)
    await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=erased_at)

    # Kim posted again: the matcher ranks them for a new question after their erasure, on that post.
    after = matched(
        "kim",
        "pat",
        "ann",
        "lee",
        thread="t1",
        at=erased_at + timedelta(seconds=2),
        posted_at=erased_at + timedelta(seconds=1),
    )
    assert [i.person_id for i in await invitations.record_match(db, event=after, policy=POLICY, now=erased_at)] == [
        "kim",
        "pat",
    ]
    escalated = await threads.escalate(db, tenant="acme", thread_id="t1", policy=POLICY, now=T0 + timedelta(hours=2))
    assert [i.person_id for i in escalated] == ["ann", "lee"]
    ranked_at_the_erasure = matched("kim", thread="t2", at=erased_at)
    assert await invitations.record_match(db, event=ranked_at_the_erasure, policy=POLICY, now=erased_at) == []

    # Erasing again moves the record later: what was ranked in between no longer invites them.
    again = T0 + timedelta(hours=3)
    assert (await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=again)).invitations == 1
    between = matched("kim", "pat", thread="t3", at=again - timedelta(minutes=1))
    assert [i.person_id for i in await invitations.record_match(db, event=between, policy=POLICY, now=again)] == ["pat"]
    assert await _erasures(db) == {("acme", _sha256("acme/kim")): again}


async def test_a_match_ranked_after_the_erasure_on_their_old_posts_invites_nobody_erased(db):
    erased_at = T0 + timedelta(minutes=1)
    await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=erased_at)

    # A matcher yet to remove kim's posts ranks a question after the notifier erased them.
    lagging = matched("kim", "pat", "ann", "lee", thread="t1", at=erased_at + timedelta(seconds=5))
    created = await invitations.record_match(db, event=lagging, policy=POLICY, now=erased_at + timedelta(seconds=6))
    escalated = await threads.escalate(db, tenant="acme", thread_id="t1", policy=POLICY, now=T0 + timedelta(hours=2))

    assert [i.person_id for i in created] == ["pat", "ann"]
    assert [i.person_id for i in escalated] == ["lee"]
    assert await _rows_mentioning(db, "kim") == []


async def test_escalation_never_invites_a_person_erased_since_the_threads_match(db):
    await invitations.record_match(
        db, event=matched("pat", "ann", "kim", "lee", thread="t1", at=T0), policy=POLICY, now=T0
    )
    await invitations.record_match(db, event=matched("pat", "ann", "kim", thread="t2", at=T0), policy=POLICY, now=T0)
    await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=T0 + timedelta(minutes=1))
    # As if a replica wrote kim back as they were being erased, or before this version kept the
    # match's time (then any erasure on record counts).
    async with db.transaction() as session:
        for state in (await session.scalars(sa.select(ThreadState))).all():
            state.candidates = [*state.candidates, Candidate(person_id="kim", score=0.75).model_dump(mode="json")]
            state.matched_at = None if state.thread_id == "t2" else state.matched_at

    for thread in ("t1", "t2"):
        escalated = await threads.escalate(
            db, tenant="acme", thread_id=thread, policy=POLICY, now=T0 + timedelta(hours=2)
        )
        found = await threads.decisions(db, tenant="acme", thread_id=thread)
        assert "kim" not in [i.person_id for i in escalated] + [c["person_id"] for c in found.state.candidates]
    assert "kim" not in [i.invitation.person_id for i in await invitations.list_for(db, tenant="acme")]
    assert await _rows_mentioning(db, "kim") == []


async def test_an_erasure_during_a_match_waits_for_it_and_then_deletes_its_invitation(postgres_url):
    db = Database(postgres_url)
    await db.migrate()
    await subscriptions.create(db, tenant="acme", url="http://acme/hook", description=None, now=T0)
    async with db.engine.connect() as blocker:
        # An uncommitted invitation of kim holds the match's own, after it found kim not erased.
        held = await blocker.begin()
        await blocker.execute(sa.insert(Invitation).values(
            id="inv_held", tenant="acme", thread_id="t1", person_id="kim", question_post_id="q", score=1.0,
            evidence=[], parts={}, match_event_id="e", created_at=T0, round=1,
        ))
        match = matched("kim", "pat", thread="t1", at=T0)
        recording = asyncio.create_task(invitations.record_match(db, event=match, policy=POLICY, now=T0))
        await until(lambda: _waiting_for_locks(db, 1), what="the match to be held")
        erasing = asyncio.create_task(erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=T0))
        await until(lambda: _done_or_waiting(erasing, db), what="the erasure to wait or finish")
        await held.rollback()
    await asyncio.gather(recording, erasing)

    invited = [i.invitation.person_id for i in await invitations.list_for(db, tenant="acme")]
    await db.close()
    assert invited == ["pat"]


async def _waiting_for_locks(db: Database, count: int) -> bool:
    async with db.engine.connect() as connection:
        return await connection.scalar(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")) >= count


async def _done_or_waiting(task: asyncio.Task, db: Database) -> bool:
    return task.done() or await _waiting_for_locks(db, 2)


async def test_erasures_no_match_can_predate_any_more_are_purged_by_the_next_erasure(db):
    await erasure.erase_person(db, tenant="acme", person_id="kim", erased_at=T0)
    await erasure.erase_person(db, tenant="acme", person_id="pat", erased_at=T0 + timedelta(days=2))
    week = erasure.ERASURE_MEMORY

    await erasure.erase_person(db, tenant="globex", person_id="lee", erased_at=T0 + week)
    assert set(await _erasures(db)) == {
        ("acme", _sha256("acme/kim")),
        ("acme", _sha256("acme/pat")),
        ("globex", _sha256("globex/lee")),
    }
    await erasure.erase_person(db, tenant="globex", person_id="lee", erased_at=T0 + week + timedelta(seconds=1))
    assert set(await _erasures(db)) == {("acme", _sha256("acme/pat")), ("globex", _sha256("globex/lee"))}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _erasures(db: Database) -> dict[tuple[str, str], datetime]:
    async with db.sessions() as session:
        rows = (await session.scalars(sa.select(PersonErasure))).all()
    return {(r.tenant, r.person_hash): r.erased_at for r in rows}


async def _rows_mentioning(db: Database, text: str) -> list[str]:
    """`table: tenant` for every row of the notifier's tables with `text` anywhere in it."""
    found = []
    async with db.sessions() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(sa.select(table))).mappings():
                if text in repr(dict(row)):
                    found.append(f"{table.name}: {row.get('tenant')}")
    return found


async def _fail_every_first_attempt(db: Database) -> None:
    due = await deliveries.claim_due(db, now=T0, limit=100, lease=timedelta(minutes=1))
    assert len(due) == 6
    for item in due:
        attempt = DeliveryAttempt(attempted_at=T0, status_code=503, duration_ms=5, error="HTTP 503")
        outcome = Outcome(DeliveryState.PENDING, next_attempt_at=T0 + timedelta(hours=1))
        await deliveries.record_attempt(db, due=item, attempt=attempt, outcome=outcome)


# --- end to end: ingest, matcher and notifier on the real broker --------------------------------


HISTORY = [
    {
        "id": "h1",
        "thread_id": "k1",
        "author_id": "kim",
        "kind": "answer",
        "body": "restart the kubernetes pods after the probe fails",
    },
    {
        "id": "h2",
        "thread_id": "k2",
        "author_id": "kim",
        "kind": "answer",
        "body": "kubernetes liveness probe timeouts restart pods",
    },
    {
        "id": "h3",
        "thread_id": "k3",
        "author_id": "pat",
        "kind": "answer",
        "body": "kubernetes pods restart when memory runs out",
    },
]


@asynccontextmanager
async def running(app):
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://svc") as client:
            yield client


async def experts(matcher, headers) -> list[str]:
    found = await matcher.post("/v1/experts/search", json={"text": "kubernetes pods restart probe"}, headers=headers)
    assert found.status_code == 200
    return [e["person_id"] for e in found.json()["experts"]]


async def invited(notifier, headers, thread: str | None = None) -> list[tuple[str, str]]:
    params = {"thread_id": thread} if thread else {}
    found = (await notifier.get("/v1/invitations", params=params, headers=headers)).json()
    return sorted((i["thread_id"], i["person_id"]) for i in found)


async def test_an_erased_person_is_gone_from_search_invitations_and_webhooks(common_settings):
    clock = ManualClock(datetime.now(UTC))
    common = common_settings.model_dump()
    notifier_settings = NotifierSettings(
        **common, retry_schedule="3600,3600", allowed_hosts="127.0.0.0/8,::1", max_invites_per_thread=2,
        escalation_delay=3600,
    )
    index = await EdgeIndex.open(MatcherSettings(**common).edge_path)
    with Receiver() as receiver:
        nf_app = notifier_app(notifier_settings, clock=clock)
        async with (
            running(ingest_app(IngestSettings(**common))) as ingest,
            running(matcher_app(MatcherSettings(**common), embedder=FakeEmbedder(), index=index)) as matcher,
            running(nf_app) as notifier,
        ):
            # History for kim and pat in acme, and another kim in globex.
            for post in HISTORY:
                assert (
                    await ingest.post("/v1/posts", json={**post, "backfill": True}, headers=ACME)
                ).status_code == 202
            await ingest.post("/v1/posts", json={**HISTORY[0], "backfill": True}, headers=GLOBEX)
            await until(lambda: _experts_are(matcher, ACME, {"kim", "pat"}), what="acme's history indexed")
            await until(lambda: _experts_are(matcher, GLOBEX, {"kim"}), what="globex's history indexed")

            # Invitations for both, whose first webhooks fail: they stay pending, due again in an hour.
            secrets = {}
            for name, headers in (("acme", ACME), ("globex", GLOBEX)):
                created = await notifier.post("/v1/subscriptions", json={"url": receiver.url}, headers=headers)
                secrets[name] = created.json()["secret"]
            receiver.answer(*[500] * 5)
            await _publish_matches(
                notifier_settings,
                matched("kim", "pat", "ann", thread="t1"),
                matched("pat", "ann", "kim", thread="t2"),
                matched("kim", thread="t1", tenant="globex"),
            )
            await receiver.wait_for(5)
            assert await invited(notifier, ACME) == [("t1", "kim"), ("t1", "pat"), ("t2", "ann"), ("t2", "pat")]
            kims = [i for i in (await notifier.get("/v1/invitations", headers=ACME)).json() if i["person_id"] == "kim"]
            await until(lambda: _first_attempts_done(notifier), what="first attempts recorded")
            assert kims[0]["deliveries"][0]["state"] == "pending"
            await notifier.post(
                f"/v1/invitations/{kims[0]['id']}/response", json={"response": "accepted"}, headers=ACME
            )
            await notifier.put("/v1/people/kim/preferences", json={"max_per_day": 1}, headers=ACME)

            answer = await ingest.delete("/v1/people/kim", headers=ACME)
            assert answer.status_code == 202 and answer.json() == {"person_id": "kim", "status": "accepted"}
            await until(lambda: _no_kim(notifier), what="the notifier to erase kim")
            await until(lambda: _experts_are(matcher, ACME, {"pat"}), what="the matcher to erase kim")

            # The pending retry is due and escalation looks again: neither reaches acme's kim.
            clock.now += timedelta(hours=3)
            before = len(receiver.received())
            await nf_app.state.notifier.escalation.escalate_due()
            await nf_app.state.notifier.worker.deliver_due()
            sent_after = receiver.received()[before:]

            acme_invited = await invited(notifier, ACME)
            thread_views = [
                (await notifier.get(f"/v1/threads/{t}/invitations", headers=ACME)).json() for t in ("t1", "t2")
            ]
            preferences = (await notifier.get("/v1/people/kim/preferences", headers=ACME)).json()
            globex_experts = await experts(matcher, GLOBEX)
            globex_invited = await invited(notifier, GLOBEX)

            # A second erasure is harmless: handled, and nothing else changes.
            handled = nf_app.state.notifier.posts_loop.stats.handled
            assert (await ingest.delete("/v1/people/kim", headers=ACME)).status_code == 202
            await until(
                lambda: _true(nf_app.state.notifier.posts_loop.stats.handled > handled), what="the second erasure"
            )
            assert await invited(notifier, ACME) == acme_invited
            assert await experts(matcher, ACME) == ["pat"]

    await index.close()
    assert acme_invited == [("t1", "ann"), ("t1", "pat"), ("t2", "ann"), ("t2", "pat")]
    for view in thread_views:
        assert "kim" not in [i["person_id"] for i in view["invited"]] + [s["person_id"] for s in view["skipped"]]
    assert preferences["max_per_day"] is None and preferences["updated_at"] is None
    payloads = [(r.headers, r.body) for r in sent_after]
    acme_sent = [Webhook(secrets["acme"]).verify(body, headers)["data"]["person_id"]
                 for headers, body in payloads if not _signed_by(secrets["globex"], headers, body)]
    assert sorted(acme_sent) == ["ann", "ann", "pat", "pat"]  # retries for pat, pat, ann; ann escalated to t1
    assert len(payloads) == 5  # and globex's kim, retried
    assert globex_experts == ["kim"] and globex_invited == [("t1", "kim")]


async def _publish_matches(settings, *events) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await publish(producer, settings.topic(MATCHES), list(events))
    finally:
        await producer.stop()


async def _experts_are(matcher, headers, people: set[str]) -> bool:
    return set(await experts(matcher, headers)) == people


async def _first_attempts_done(notifier) -> bool:
    found = [
        d
        for h in (ACME, GLOBEX)
        for i in (await notifier.get("/v1/invitations", headers=h)).json()
        for d in i["deliveries"]
    ]
    return len(found) == 5 and all(d["attempts"] == 1 for d in found)


async def _no_kim(notifier) -> bool:
    return all(person != "kim" for _, person in await invited(notifier, ACME))


async def _true(value: bool) -> bool:
    return value


def _signed_by(secret: str, headers: dict, body: bytes) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except Exception:
        return False
    return True
