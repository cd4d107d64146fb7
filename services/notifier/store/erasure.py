"""Erasing a person: everything the notifier holds about them goes, in one transaction, and a
hashed record of the erasure keeps matches ranked on their old posts from inviting them again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import (
    Delivery,
    DeliveryAttempt,
    Invitation,
    InvitationResponseRecord,
    InvitationSkip,
    PersonErasure,
    PersonPreferences,
    ThreadReply,
    ThreadState,
)
from services.notifier.store.database import Database
from services.notifier.store.people import lock_people
from shared.events import Candidate

# The matches topic keeps a match 7 days (deploy/topics.json): after that no match ranked before
# an erasure can still arrive, and its record goes.
ERASURE_MEMORY = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Erasure:
    """How many rows of each kind one erasure removed (all zero when it was done already)."""

    invitations: int = 0
    deliveries: int = 0
    responses: int = 0
    preferences: int = 0
    skips: int = 0
    replies: int = 0
    threads_rewritten: int = 0
    threads_removed: int = 0


async def erase_person(db: Database, *, tenant: str, person_id: str, erased_at: datetime) -> Erasure:
    """Record the erasure, then delete the person's invitations (with their webhooks and responses),
    preferences, skips and replies, and drop them from every thread's stored candidates; idempotent."""
    await _remember(db, tenant=tenant, person_id=person_id, erased_at=erased_at)
    async with db.transaction() as session:
        # Taken first on SQLite, so a delivery claim cannot interleave with the deletes.
        await db.write_lock(session)
        invitations = await _ids(session, sa.select(Invitation.id).where(_of(Invitation, tenant, person_id)))
        deliveries = await _ids(session, sa.select(Delivery.id).where(Delivery.invitation_id.in_(invitations)))
        await session.execute(sa.delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(deliveries)))
        await session.execute(sa.delete(Delivery).where(Delivery.id.in_(deliveries)))
        responses = await _delete(
            session,
            sa.delete(InvitationResponseRecord).where(
                sa.or_(
                    InvitationResponseRecord.invitation_id.in_(invitations),
                    _of(InvitationResponseRecord, tenant, person_id),
                )
            ),
        )
        await session.execute(sa.delete(Invitation).where(Invitation.id.in_(invitations)))
        preferences = await _delete(
            session, sa.delete(PersonPreferences).where(_of(PersonPreferences, tenant, person_id))
        )
        skips = await _delete(session, sa.delete(InvitationSkip).where(_of(InvitationSkip, tenant, person_id)))
        replies = await _delete(session, sa.delete(ThreadReply).where(_of(ThreadReply, tenant, person_id)))
        rewritten, removed = await _forget_in_threads(session, tenant=tenant, person_id=person_id)
    return Erasure(
        invitations=len(invitations),
        deliveries=len(deliveries),
        responses=responses,
        preferences=preferences,
        skips=skips,
        replies=replies,
        threads_rewritten=rewritten,
        threads_removed=removed,
    )


def person_hash(tenant: str, person_id: str) -> str:
    """How an erasure record names the person: no readable id of an erased person is kept."""
    return hashlib.sha256(f"{tenant}/{person_id}".encode()).hexdigest()


async def erased_for(
    session: AsyncSession,
    *,
    tenant: str,
    ranked_at: datetime | None,
    candidates: Sequence[Candidate],
    others: Collection[str] = (),
) -> set[str]:
    """Which of a match's people it may no longer name, ranked at `ranked_at` (None: not known).

    Anyone erased at or after the match was ranked (any erasure on record if `ranked_at` is None).
    And a candidate erased before it, but found by posts from before their erasure: a matcher
    that had not yet removed their posts ranked the match. A person who posted again since is
    found by those new posts, and can be invited.

    Each person is locked first (see `lock_people`), so an erasure either waits for this
    transaction to end, and then deletes what it wrote, or has committed its record, seen here.
    """
    ids = sorted({*others, *(c.person_id for c in candidates)})
    if not ids:
        return set()
    await lock_people(session, tenant=tenant, person_ids=ids)
    by_hash = {person_hash(tenant, person_id): person_id for person_id in ids}
    query = sa.select(PersonErasure.person_hash, PersonErasure.erased_at).where(
        PersonErasure.tenant == tenant, PersonErasure.person_hash.in_(by_hash)
    )
    erased_at = {by_hash[found]: at for found, at in (await session.execute(query)).all()}
    gone = {person for person, at in erased_at.items() if ranked_at is None or at >= ranked_at}
    return gone | {c.person_id for c in candidates if _found_by_old_posts(c, erased_at.get(c.person_id))}


def _found_by_old_posts(candidate: Candidate, erased_at: datetime | None) -> bool:
    """Whether the candidate was erased and any of their evidence predates it (or has no date, or there is none)."""
    if erased_at is None:
        return False
    return not candidate.evidence or any(e.created_at is None or e.created_at < erased_at for e in candidate.evidence)


async def _remember(db: Database, *, tenant: str, person_id: str, erased_at: datetime) -> None:
    """Record (or move later) the person's erasure, committed before the deletes start, and drop
    the records no match on the topic can predate any more."""
    async with db.transaction() as session:
        await db.write_lock(session)
        # Whoever is inviting the person right now commits first: the deletes then see it.
        await lock_people(session, tenant=tenant, person_ids=[person_id])
        key = (tenant, person_hash(tenant, person_id))
        found = await session.get(PersonErasure, key, with_for_update=True)
        if found is None:
            session.add(PersonErasure(tenant=tenant, person_hash=key[1], erased_at=erased_at))
        else:
            found.erased_at = max(found.erased_at, erased_at)
        await _purge(session, before=erased_at - ERASURE_MEMORY)


async def _purge(session: AsyncSession, *, before: datetime) -> None:
    # Rows another erasure holds are left for the next one: two purges never wait on each other.
    stale = sa.select(PersonErasure.tenant, PersonErasure.person_hash).where(PersonErasure.erased_at < before)
    keys = (await session.execute(stale.with_for_update(skip_locked=True))).all()
    if keys:
        await session.execute(
            sa.delete(PersonErasure).where(sa.tuple_(PersonErasure.tenant, PersonErasure.person_hash).in_(keys))
        )


async def _forget_in_threads(session: AsyncSession, *, tenant: str, person_id: str) -> tuple[int, int]:
    """Drop the person from stored candidates and participants; a thread they asked goes whole."""
    # The JSON columns are matched as text first (the id as JSON spells it), then checked exactly.
    spelled = json.dumps(person_id)
    query = sa.select(ThreadState).where(
        ThreadState.tenant == tenant,
        sa.or_(
            sa.cast(ThreadState.candidates, sa.Text).contains(spelled, autoescape=True),
            sa.cast(ThreadState.participants, sa.Text).contains(spelled, autoescape=True),
            sa.cast(ThreadState.question, sa.Text).contains(spelled, autoescape=True),
        ),
    )
    rewritten = removed = 0
    for state in (await session.scalars(query.with_for_update())).all():
        if state.question.get("author_id") == person_id:
            # Their question's text is theirs: escalation for it stops with the thread's state.
            await session.delete(state)
            removed += 1
            continue
        candidates = [c for c in state.candidates if c.get("person_id") != person_id]
        participants = [p for p in state.participants if p != person_id]
        if candidates != state.candidates or participants != state.participants:
            state.candidates, state.participants = candidates, participants
            rewritten += 1
    return rewritten, removed


def _of(model, tenant: str, person_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(model.tenant == tenant, model.person_id == person_id)


async def _ids(session: AsyncSession, query: sa.Select) -> list:
    return list((await session.scalars(query)).all())


async def _delete(session: AsyncSession, statement: sa.Delete) -> int:
    return (await session.execute(statement)).rowcount
