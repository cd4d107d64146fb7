"""Invitees' responses, kept as an outbox: stored first, then published as `invitation.responded`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import sqlalchemy as sa

from services.notifier.models import Invitation, InvitationResponseRecord
from services.notifier.store.database import Database
from shared.events import InvitationResponded, InvitationResponse, ResponseKind


async def record(
    db: Database, *, invitation: Invitation, response: ResponseKind, now: datetime
) -> InvitationResponseRecord:
    """Store one response to an invitation; its id is the id of the event that will carry it."""
    found = InvitationResponseRecord(
        id=str(uuid.uuid4()),
        tenant=invitation.tenant,
        invitation_id=invitation.id,
        thread_id=invitation.thread_id,
        person_id=invitation.person_id,
        response=response.value,
        created_at=now,
    )
    async with db.transaction() as session:
        session.add(found)
    return found


async def list_for(db: Database, *, invitation_id: str) -> list[InvitationResponseRecord]:
    query = (
        sa.select(InvitationResponseRecord)
        .where(InvitationResponseRecord.invitation_id == invitation_id)
        .order_by(InvitationResponseRecord.created_at)
    )
    async with db.sessions() as session:
        return list((await session.scalars(query)).all())


async def publish_unpublished(
    db: Database,
    *,
    send: Callable[[Sequence[InvitationResponded]], Awaitable[object]],
    now: datetime,
    limit: int = 100,
) -> int:
    """Send the oldest unpublished responses and mark them; rows stay locked meanwhile on PostgreSQL."""
    query = (
        sa.select(InvitationResponseRecord, Invitation)
        .join(Invitation, Invitation.id == InvitationResponseRecord.invitation_id)
        .where(InvitationResponseRecord.published_at.is_(None))
        .order_by(InvitationResponseRecord.created_at)
        .limit(limit)
    )
    if db.is_postgres:
        query = query.with_for_update(of=InvitationResponseRecord, skip_locked=True)
    async with db.transaction() as session:
        await db.write_lock(session)
        rows = (await session.execute(query)).all()
        if not rows:
            return 0
        await send([_event(record, invitation) for record, invitation in rows])
        for record, _ in rows:
            record.published_at = now
    return len(rows)


def _event(record: InvitationResponseRecord, invitation: Invitation) -> InvitationResponded:
    return InvitationResponded(
        id=uuid.UUID(record.id),
        tenant=record.tenant,
        time=record.created_at,
        data=InvitationResponse(
            invitation_id=invitation.id,
            thread_id=invitation.thread_id,
            person_id=invitation.person_id,
            response=ResponseKind(record.response),
            question_post_id=invitation.question_post_id,
            question_title=invitation.question_title,
            score=invitation.score,
            responded_at=record.created_at,
        ),
    )
