"""The notifier's store on SQLite and on a real PostgreSQL: migrations, invitations, the delivery queue."""

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import IntegrityError

from services.notifier.consumer import matches_handler
from services.notifier.models import Delivery, Invitation, ThreadState
from services.notifier.payload import stored_why
from services.notifier.policy import InvitePolicy, Policies
from services.notifier.store import Database, deliveries, invitations, subscriptions, threads
from services.notifier.store.database import MIGRATIONS
from shared.consumer import TransientError
from shared.embedded_broker import free_port
from shared.events import Candidate, Evidence, ExpertsMatched, Match, PostKind, Question
from shared.logs import JsonFormatter
from tests.support.commits import WriteCommits
from tests.support.events import matched

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DEFAULT_POLICIES = Policies(InvitePolicy(), {})


async def test_migrations_create_the_tables_and_run_again_harmlessly(db):
    await db.migrate()
    async with db.engine.connect() as connection:
        tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    assert {
        "subscriptions",
        "invitations",
        "deliveries",
        "delivery_attempts",
        "person_erasures",
        "alembic_version",
    } <= tables


async def test_migration_0003_upgrades_a_0002_database_keeping_its_threads(db):
    await invitations.record_match(db, event=matched("ann", "bob"), now=NOW)
    async with db.engine.begin() as connection:
        await connection.run_sync(_alembic, "downgrade", "0002")
        assert "person_erasures" not in await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())

    await db.migrate()
    await db.migrate()

    async with db.engine.connect() as connection:
        assert "person_erasures" in await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        version = await connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    async with db.sessions() as session:
        [state] = (await session.scalars(sa.select(ThreadState))).all()
    assert version == "0005"
    assert [c["person_id"] for c in state.candidates] == ["ann", "bob"] and state.matched_at is None


async def test_migration_0004_keeps_earlier_invitations_and_rebuilds_their_why_from_evidence(db):
    await invitations.record_match(db, event=matched("ann"), now=NOW)
    async with db.engine.begin() as connection:
        await connection.run_sync(_alembic, "downgrade", "0003")
        columns = await connection.run_sync(
            lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("invitations")}
        )
        assert "why" not in columns

    await db.migrate()

    [view] = await invitations.list_for(db, tenant="acme")
    assert view.invitation.why is None and view.invitation.track_record is None
    assert stored_why(view.invitation) == "You answered “Vault”."


async def test_migration_0005_keeps_pending_deliveries_which_then_have_no_trace(db):
    await subscriptions.create(db, tenant="acme", url="https://hooks.example.com/x", description=None, now=NOW)
    await invitations.record_match(db, event=matched("ann"), now=NOW)
    async with db.engine.begin() as connection:
        await connection.run_sync(_alembic, "downgrade", "0004")
        columns = await connection.run_sync(
            lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("deliveries")}
        )
        assert "traceparent" not in columns

    await db.migrate()

    async with db.sessions() as session:
        [delivery] = (await session.scalars(sa.select(Delivery))).all()
    assert delivery.state == "pending" and delivery.traceparent is None


async def test_a_match_where_nobody_is_close_enough_invites_nobody_and_its_thread_says_so(db):
    far = Evidence(
        post_id="p", thread_id="t0", kind=PostKind.ANSWER, title="Deploy freeze", snippet="s", similarity=0.1
    )
    question = Question(post_id="t1-q", thread_id="t1", author_id="asker", title="Rotate Vault?", excerpt="How?")
    busy = (Candidate(person_id="busy", score=5.0, evidence=(far,)), Candidate(person_id="quiet", score=1.0))
    event = ExpertsMatched(tenant="acme", data=Match(question=question, candidates=busy))

    assert await invitations.record_match(db, event=event, now=NOW) == []

    found = await threads.decisions(db, tenant="acme", thread_id="t1")
    assert found.invitations == []
    assert {(s.person_id, s.reason) for s in found.skips} == {
        ("busy", "not_close_enough"),
        ("quiet", "not_close_enough"),
    }
    assert found.state.closed_reason == "no_one_close_enough" and found.state.escalate_at is None
    # A later match of the thread that finds someone close invites them and escalation resumes.
    again = ExpertsMatched(tenant="acme", data=Match(question=question, candidates=matched("ann").data.candidates))
    [invited] = await invitations.record_match(db, event=again, now=NOW + timedelta(minutes=5))
    state = (await threads.decisions(db, tenant="acme", thread_id="t1")).state
    assert invited.person_id == "ann" and state.closed_reason is None and state.escalate_at is not None


def _alembic(connection: sa.Connection, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, step)(config, revision)


async def test_a_match_invites_the_best_three_with_one_delivery_per_active_subscription(db):
    first = await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    second = await subscriptions.create(db, tenant="acme", url="http://b/hook", description=None, now=NOW)
    await subscriptions.create(db, tenant="globex", url="http://g/hook", description=None, now=NOW)
    await subscriptions.delete(db, tenant="acme", subscription_id=second.id, now=NOW)
    event = matched("asker", "ann", "part", "bob", "cy", "dee", participants=("part",))

    created = await invitations.record_match(db, event=event, now=NOW)

    assert [i.person_id for i in created] == ["ann", "bob", "cy"]
    views = await invitations.list_for(db, tenant="acme", thread_id="t1")
    assert {v.invitation.person_id for v in views} == {"ann", "bob", "cy"}
    assert all([d.subscription_id for d in v.deliveries] == [first.id] for v in views)
    assert await invitations.list_for(db, tenant="globex") == []


async def test_handling_the_same_match_again_invites_nobody_new(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    event = matched("ann", "bob")
    await invitations.record_match(db, event=event, now=NOW)
    assert await invitations.record_match(db, event=event, now=NOW) == []
    # A later match of the same thread fills the thread up to the limit, no further.
    later = await invitations.record_match(db, event=matched("bob", "cy", "dee"), now=NOW)
    assert [i.person_id for i in later] == ["cy"]
    views = await invitations.list_for(db, tenant="acme")
    assert sorted(v.invitation.person_id for v in views) == ["ann", "bob", "cy"]
    assert sum(len(v.deliveries) for v in views) == 3


async def test_the_database_refuses_a_second_invitation_of_a_person_to_a_thread(db):
    await invitations.record_match(db, event=matched("ann"), now=NOW)
    duplicate = Invitation(
        id="inv_dup",
        tenant="acme",
        thread_id="t1",
        person_id="ann",
        question_post_id="q",
        score=1.0,
        evidence=[],
        parts={},
        match_event_id="e",
        created_at=NOW,
    )
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            session.add(duplicate)


async def test_claiming_takes_due_deliveries_once_until_their_lease_ends(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    await invitations.record_match(db, event=matched("ann", "bob"), now=NOW)
    lease = timedelta(seconds=30)

    assert await deliveries.claim_due(db, now=NOW - timedelta(seconds=1), limit=10, lease=lease) == []
    claimed = await deliveries.claim_due(db, now=NOW, limit=10, lease=lease)
    assert len(claimed) == 2 and claimed[0].payload.startswith(b'{"type":"invitation.created"')
    assert await deliveries.claim_due(db, now=NOW + timedelta(seconds=29), limit=10, lease=lease) == []
    again = await deliveries.claim_due(db, now=NOW + timedelta(seconds=31), limit=10, lease=lease)
    assert {d.message_id for d in again} == {d.message_id for d in claimed}


async def test_two_replicas_claiming_at_once_never_get_the_same_delivery(postgres_url):
    replicas = [Database(postgres_url), Database(postgres_url)]
    await replicas[0].migrate()
    await subscriptions.create(replicas[0], tenant="acme", url="http://a/hook", description=None, now=NOW)
    for thread in range(20):
        await invitations.record_match(
            replicas[0], event=matched(f"ann{thread}", f"bob{thread}", thread=f"t{thread}"), now=NOW
        )

    claimed: list[str] = []
    for _ in range(10):
        rounds = await asyncio.gather(
            *(
                deliveries.claim_due(db, now=NOW, limit=3, lease=timedelta(minutes=1))
                for db in replicas
                for _ in range(2)
            )
        )
        claimed += [d.id for found in rounds for d in found]
    for db in replicas:
        await db.close()
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


async def test_the_first_round_never_invites_more_than_the_threads_total(db):
    created = await invitations.record_match(
        db, event=matched("ann", "bob", "cy", "dee"), policy=InvitePolicy(initial=3, total=2), now=NOW
    )

    assert [i.person_id for i in created] == ["ann", "bob"]


async def test_two_replicas_inviting_one_person_at_once_keep_to_the_daily_cap(postgres_url):
    replicas = [Database(postgres_url), Database(postgres_url)]
    await replicas[0].migrate()
    policy = InvitePolicy(initial=1, per_day=3)

    # Twelve threads at the same instant, each with the same best candidate, split over two replicas.
    await asyncio.gather(
        *(
            invitations.record_match(
                replicas[thread % 2], event=matched("ann", f"bob{thread}", thread=f"t{thread}"), policy=policy, now=NOW
            )
            for thread in range(12)
        )
    )

    async with replicas[0].transaction() as session:
        ann = (await session.scalars(sa.select(Invitation.thread_id).where(Invitation.person_id == "ann"))).all()
        others = (await session.scalars(sa.select(Invitation.person_id).where(Invitation.person_id != "ann"))).all()
    for db in replicas:
        await db.close()
    assert len(ann) == 3
    # Every other thread invited its next candidate instead.
    assert len(others) == 9


async def test_the_handler_records_matches_idempotently_and_wakes_the_sender(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    wakes = []
    handle = matches_handler(db, policies=DEFAULT_POLICIES, on_invited=lambda: wakes.append(1), clock=lambda: NOW)
    event = matched("ann", "bob", "cy", "dee")
    await handle([event, event])
    await handle([event])
    views = await invitations.list_for(db, tenant="acme")
    assert sorted(v.invitation.person_id for v in views) == ["ann", "bob", "cy"]
    assert len(wakes) == 1


async def test_a_batch_of_matches_is_recorded_in_one_commit(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    handle = matches_handler(db, policies=DEFAULT_POLICIES, on_invited=lambda: None, clock=lambda: NOW)
    batch = [matched("ann", "bob", thread="t1"), matched("cy", thread="t2"), matched("ann", "dee", thread="t1")]
    writes = WriteCommits(db.engine)

    await handle(batch)

    writes.close()
    assert writes.count == 1  # on SQLite: one sync to disk for the whole batch, not one per match
    views = await invitations.list_for(db, tenant="acme")
    assert sorted((v.invitation.thread_id, v.invitation.person_id) for v in views) == [
        ("t1", "ann"), ("t1", "bob"), ("t1", "dee"), ("t2", "cy")
    ]
    assert all(len(v.deliveries) == 1 for v in views)


async def test_handed_over_deliveries_are_claimed_for_the_sender_until_their_lease_ends(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    handed: list = []
    lease = timedelta(seconds=45)
    handle = matches_handler(
        db, policies=DEFAULT_POLICIES, on_invited=lambda: pytest.fail("no wake: the sender has them"),
        send_now=handed.extend, lease=lease, clock=lambda: NOW,
    )

    await handle([matched("ann", "bob", thread="t1"), matched("cy", thread="t2")])

    views = await invitations.list_for(db, tenant="acme")
    queued = {d.id: d for v in views for d in v.deliveries}
    assert sorted(d.id for d in handed) == sorted(queued) and len(handed) == 3
    assert {json.loads(d.payload)["data"]["person_id"] for d in handed} == {"ann", "bob", "cy"}
    # No worker claims them while the lease lasts; should their sender die, they are due after it.
    assert await deliveries.claim_due(db, now=NOW + lease - timedelta(seconds=1), limit=10, lease=lease) == []
    again = await deliveries.claim_due(db, now=NOW + lease, limit=10, lease=lease)
    assert sorted(d.id for d in again) == sorted(queued)


async def test_a_large_batch_commits_and_hands_over_a_few_matches_at_a_time(db):
    await subscriptions.create(db, tenant="acme", url="http://a/hook", description=None, now=NOW)
    handed: list[list[str]] = []
    batch = [matched("ann", thread="t1"), matched("bob", thread="t2"), matched("cy", thread="t3")]

    def send_now(due) -> None:
        handed.append(sorted(json.loads(d.payload)["data"]["thread_id"] for d in due))

    handle = matches_handler(
        db, policies=DEFAULT_POLICIES, on_invited=lambda: None, send_now=send_now, lease=timedelta(minutes=1),
        per_transaction=2, clock=lambda: NOW,
    )
    writes = WriteCommits(db.engine)

    await handle(batch)

    writes.close()
    assert writes.count == 2
    # The first two were handed over on their own commit, before the third was decided.
    assert handed == [["t1", "t2"], ["t3"]]
    views = await invitations.list_for(db, tenant="acme")
    assert sorted(v.invitation.thread_id for v in views) == ["t1", "t2", "t3"]


async def test_each_decision_of_a_match_is_one_log_line_naming_the_invited_and_the_passed_over(db, caplog):
    caplog.set_level(logging.INFO, logger="services.notifier.store.invitations")
    caplog.handler.setFormatter(JsonFormatter("notifier"))
    handle = matches_handler(db, policies=DEFAULT_POLICIES, on_invited=lambda: None, clock=lambda: NOW)
    event = matched("asker", "ann", "part", "bob", "cy", participants=("part",))

    await handle([event, event])

    lines = [json.loads(text) for text in caplog.text.splitlines()]
    [line] = [entry for entry in lines if entry.get("event") == "invite"]
    views = await invitations.list_for(db, tenant="acme", thread_id="t1")
    assert (line["tenant"], line["thread_id"], line["post_id"], line["event_id"], line["round"]) == (
        "acme", "t1", "t1-q", str(event.id), 1
    )
    assert sorted((i["person_id"], i["invitation_id"]) for i in line["invited"]) == sorted(
        (v.invitation.person_id, v.invitation.id) for v in views
    )
    assert {(s["person_id"], s["reason"]) for s in line["skipped"]} == {("asker", "asker"), ("part", "participant")}


async def test_an_unreachable_database_is_a_transient_error():
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/absent")
    handle = matches_handler(db, policies=DEFAULT_POLICIES, on_invited=lambda: None)
    with pytest.raises(TransientError, match="database unavailable"):
        await handle([matched("ann")])
    await db.close()


async def test_a_sqlite_file_keeps_a_write_ahead_log_synced_on_every_commit(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
    try:
        await db.migrate()
        async with db.engine.connect() as connection:
            mode = (await connection.execute(sa.text("PRAGMA journal_mode"))).scalar()
            synchronous = (await connection.execute(sa.text("PRAGMA synchronous"))).scalar()
    finally:
        await db.close()
    assert (mode, synchronous) == ("wal", 2), "WAL, and FULL: a commit is on disk when it returns"


async def test_on_sqlite_the_transactions_of_one_process_take_turns_instead_of_meeting_the_lock(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")

    def no_patience(connection, _record) -> None:
        # A writer that meets another's lock now fails at once instead of sleeping in SQLite's busy handler.
        connection.execute("PRAGMA busy_timeout=0")

    sa.event.listen(db.engine.sync_engine, "connect", no_patience)
    await db.migrate()
    async with db.transaction() as session:
        await session.execute(sa.text("CREATE TABLE writes (n INTEGER)"))

    async def write(n: int) -> None:
        async with db.transaction() as session:
            await db.write_lock(session)
            await asyncio.sleep(0)  # another transaction gets the loop while this one holds the lock
            await session.execute(sa.text("INSERT INTO writes VALUES (:n)"), {"n": n})

    try:
        await asyncio.gather(*(write(n) for n in range(20)))
        async with db.sessions() as session:
            stored = (await session.execute(sa.text("SELECT count(*) FROM writes"))).scalar()
    finally:
        await db.close()
    assert stored == 20, "every write committed, none refused with 'database is locked'"


async def test_a_deadlock_postgresql_breaks_is_a_retry_of_the_batch_not_a_dead_letter(postgres_url):
    from services.notifier.consumer import _store

    database = Database(postgres_url)
    try:
        async with database.transaction() as session:
            await session.execute(sa.text("CREATE TABLE IF NOT EXISTS crossed (id int PRIMARY KEY, n int)"))
            await session.execute(sa.text("INSERT INTO crossed VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING"))
        both_hold_one = asyncio.Barrier(2)

        async def cross(first: int, second: int) -> None:
            async with database.transaction() as session:
                await session.execute(sa.text("UPDATE crossed SET n = n + 1 WHERE id = :id"), {"id": first})
                await both_hold_one.wait()
                await session.execute(sa.text("UPDATE crossed SET n = n + 1 WHERE id = :id"), {"id": second})

        outcomes = await asyncio.gather(_store(cross(1, 2)), _store(cross(2, 1)), return_exceptions=True)

        [broken] = [o for o in outcomes if isinstance(o, BaseException)]
        assert isinstance(broken, TransientError) and "deadlock" in str(broken), broken
        async with database.transaction() as session:
            total = (await session.execute(sa.text("SELECT sum(n) FROM crossed"))).scalar()
        assert total == 2, "the other transaction went through"
    finally:
        async with database.transaction() as session:
            await session.execute(sa.text("DROP TABLE IF EXISTS crossed"))
        await database.close()
