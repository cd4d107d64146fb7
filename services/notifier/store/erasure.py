"""Erasing a person: everything the notifier holds about them goes, in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import (
    Delivery,
    DeliveryAttempt,
    Invitation,
    InvitationResponseRecord,
    InvitationSkip,
    PersonPreferences,
    ThreadReply,
    ThreadState,
)
from services.notifier.store.database import Database


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


async def erase_person(db: Database, *, tenant: str, person_id: str) -> Erasure:
    """Delete the person's invitations (with their webhooks and responses), preferences, skips and
    replies, and drop them from every thread's stored candidates; idempotent."""
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
        preferences = await _delete(session, sa.delete(PersonPreferences).where(_of(PersonPreferences, tenant, person_id)))
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
