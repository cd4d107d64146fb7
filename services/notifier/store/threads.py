"""Threads as escalation sees them: who replied, whether an answer was accepted, who to invite next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import (
    Invitation,
    InvitationResponseRecord,
    InvitationSkip,
    ThreadReply,
    ThreadState,
)
from services.notifier.policy import Closed, InvitePolicy, nobody_close_enough
from services.notifier.store.database import Database
from services.notifier.store.erasure import erased_for
from services.notifier.store.invitations import invite, invited_people
from shared.events import Candidate, Post, PostKind, ResponseKind


async def record_replies(db: Database, posts: Sequence[Post]) -> int:
    """Remember who wrote in which thread and whether it was accepted; idempotent per post."""
    replies = [p for p in posts if p.kind != PostKind.QUESTION]
    async with db.transaction() as session:
        for post in replies:
            found = await session.get(ThreadReply, (post.tenant, post.thread_id, post.id), with_for_update=True)
            if found is None:
                session.add(
                    ThreadReply(
                        tenant=post.tenant,
                        thread_id=post.thread_id,
                        post_id=post.id,
                        person_id=post.author_id,
                        accepted=post.accepted,
                        created_at=post.created_at,
                    )
                )
            else:
                found.accepted = post.accepted
    return len(replies)


async def claim_due(db: Database, *, now: datetime, limit: int, lease: timedelta) -> list[tuple[str, str]]:
    """(tenant, thread id) of threads whose escalation is due, held for `lease` from other replicas."""
    query = (
        sa.select(ThreadState)
        .where(ThreadState.escalate_at <= now, ThreadState.closed_reason.is_(None))
        .order_by(ThreadState.escalate_at)
        .limit(limit)
    )
    if db.is_postgres:
        query = query.with_for_update(skip_locked=True)
    async with db.transaction() as session:
        await db.write_lock(session)
        due = list((await session.scalars(query)).all())
        for state in due:
            state.escalate_at = now + lease
        return [(state.tenant, state.thread_id) for state in due]


async def escalate(
    db: Database, *, tenant: str, thread_id: str, policy: InvitePolicy, now: datetime
) -> list[Invitation]:
    """Stop if someone answered; else invite the thread's next candidates, up to the policy's total."""
    async with db.transaction() as session:
        # On SQLite: an erasure cannot commit between the check of the candidates and the invitations.
        await db.write_lock(session)
        state = await session.get(ThreadState, (tenant, thread_id), with_for_update=True)
        if state is None or state.closed_reason is not None:
            return []
        invited = await invited_people(session, tenant=tenant, thread_id=thread_id)
        room = min(policy.initial, policy.total - len(invited))
        reason = await _stop_reason(session, state, invited)
        if reason is None and room <= 0:
            reason = Closed.LIMIT_REACHED
        if reason is not None:
            state.close(reason, now)
            return []
        candidates = await _candidates(session, state)
        created = (
            await invite(
                session, state=state, candidates=candidates, invited=invited, room=room,
                round_=state.rounds + 1, policy=policy, now=now,
            )
        ).invitations
        if not created:
            nobody = nobody_close_enough(candidates, invited, policy)
            state.close(Closed.NO_ONE_CLOSE_ENOUGH if nobody else Closed.NO_CANDIDATES, now)
        elif len(invited) + len(created) >= policy.total:
            state.rounds += 1
            state.close(Closed.LIMIT_REACHED, now)
        else:
            state.rounds += 1
            state.escalate_at, state.updated_at = now + policy.escalation_delay, now
        return created


async def _candidates(session: AsyncSession, state: ThreadState) -> list[Candidate]:
    """The thread's stored candidates but those its match may no longer name (dropped from it too)."""
    candidates = [Candidate.model_validate(c) for c in state.candidates]
    erased = await erased_for(session, tenant=state.tenant, ranked_at=state.matched_at, candidates=candidates)
    if erased:
        state.candidates = [c for c in state.candidates if c["person_id"] not in erased]
    return [c for c in candidates if c.person_id not in erased]


async def _stop_reason(session: AsyncSession, state: ThreadState, invited: set[str]) -> Closed | None:
    of_thread = sa.and_(ThreadReply.tenant == state.tenant, ThreadReply.thread_id == state.thread_id)
    accepted = await session.scalar(sa.select(sa.func.count()).where(of_thread, ThreadReply.accepted.is_(True)))
    if accepted:
        return Closed.ACCEPTED_ANSWER
    repliers = set((await session.scalars(sa.select(ThreadReply.person_id).where(of_thread))).all())
    answered = await session.scalar(
        sa.select(sa.func.count()).where(
            InvitationResponseRecord.tenant == state.tenant,
            InvitationResponseRecord.thread_id == state.thread_id,
            InvitationResponseRecord.response == ResponseKind.ANSWERED.value,
        )
    )
    if repliers & invited or answered:
        return Closed.INVITEE_REPLIED
    return None


@dataclass(frozen=True, slots=True)
class ThreadDecisions:
    """Every invite decision for one thread: invitations, skips, responses and escalation state."""

    state: ThreadState | None
    invitations: list[Invitation]
    skips: list[InvitationSkip]
    responses: list[InvitationResponseRecord]


async def decisions(db: Database, *, tenant: str, thread_id: str) -> ThreadDecisions:
    async with db.sessions() as session:
        state = await session.get(ThreadState, (tenant, thread_id))
        invitations = (
            await session.scalars(
                sa.select(Invitation)
                .where(Invitation.tenant == tenant, Invitation.thread_id == thread_id)
                .order_by(Invitation.created_at, Invitation.score.desc())
            )
        ).all()
        skips = (
            await session.scalars(
                sa.select(InvitationSkip)
                .where(InvitationSkip.tenant == tenant, InvitationSkip.thread_id == thread_id)
                .order_by(InvitationSkip.decided_at, InvitationSkip.id)
            )
        ).all()
        responses = (
            await session.scalars(
                sa.select(InvitationResponseRecord)
                .where(InvitationResponseRecord.tenant == tenant, InvitationResponseRecord.thread_id == thread_id)
                .order_by(InvitationResponseRecord.created_at)
            )
        ).all()
    return ThreadDecisions(state, list(invitations), list(skips), list(responses))
