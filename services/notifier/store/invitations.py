"""Invitations, their skips and their pending deliveries, written together in one transaction."""

from __future__ import annotations

import collections
import contextvars
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import (
    Delivery,
    DeliveryState,
    Invitation,
    InvitationSkip,
    Subscription,
    ThreadState,
)
from services.notifier.payload import INVITATION_CREATED, invitation_payload, why_you
from services.notifier.policy import Closed, InvitePolicy, Skip, nobody_close_enough, plan_invitations
from services.notifier.store.database import Database, new_id
from services.notifier.store.deliveries import DueDelivery, due_delivery
from services.notifier.store.erasure import erased_for
from services.notifier.store.people import load_people, lock_people
from shared import metrics, tracing
from shared.events import Candidate, ExpertsMatched, Match, Question

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Invited:
    """What `invite` stored: the invitations, and the delivery queued for each subscription of each."""

    invitations: list[Invitation]
    deliveries: list[tuple[Delivery, Subscription]]


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation as its tenant sees it, with the state of each of its deliveries."""

    invitation: Invitation
    deliveries: list[Delivery]


async def record_match(
    db: Database, *, event: ExpertsMatched, policy: InvitePolicy = InvitePolicy(), now: datetime
) -> list[Invitation]:
    """Invite a match's first candidates and keep the rest for escalation, in a transaction of its own."""
    async with recording(db, events=[event], now=now) as recorder:
        return await recorder.record(event, policy=policy)


@asynccontextmanager
async def recording(
    db: Database, *, events: Sequence[ExpertsMatched], now: datetime, lease: timedelta | None = None
) -> AsyncIterator[MatchRecorder]:
    """One transaction for the decisions of a batch of matches (`events`, recorded in any subset or order):
    one commit, and on SQLite one sync to disk, however many there are.

    With `lease`, the batch's new deliveries are claimed for that long by whoever records them
    (`MatchRecorder.leased`), to send them at once after the commit without claiming them again; if
    that sender dies first, they fall due again when the lease runs out, as any claim does.
    """
    async with db.transaction() as session:
        # On SQLite: an erasure cannot commit between the checks below and the invitations.
        await db.write_lock(session)
        if db.is_postgres:
            await _lock_in_order(session, events)
        yield MatchRecorder(session, now=now, lease=lease)


async def _lock_in_order(session: AsyncSession, events: Sequence[ExpertsMatched]) -> None:
    """Lock every thread of the batch, then every person, each in one sorted order.

    One event at a time would lock its thread and people, then the next event's: two replicas'
    batches (or a batch and an escalation, which locks its thread first) could then each hold what
    the other waits for. In one order, whoever comes second waits with nothing held.
    """
    for tenant, thread_id in sorted({(e.tenant, e.data.question.thread_id) for e in events}):
        await session.get(ThreadState, (tenant, thread_id), with_for_update=True)
    people: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        people[event.tenant].update([*_others_of(event.data), *(c.person_id for c in event.data.candidates)])
    for tenant in sorted(people):
        await lock_people(session, tenant=tenant, person_ids=people[tenant])


class MatchRecorder:
    """Records matches in the transaction `recording` opened; `leased` are the deliveries to send after it."""

    def __init__(self, session: AsyncSession, *, now: datetime, lease: timedelta | None) -> None:
        self._session, self._now, self._lease = session, now, lease
        self.leased: list[DueDelivery] = []

    async def record(self, event: ExpertsMatched, *, policy: InvitePolicy) -> list[Invitation]:
        """Invite a match's first candidates and keep the rest for escalation; idempotent per person and thread.

        Whoever the match may no longer name (`erased_for`: erased since it was ranked, or found by
        posts from before their erasure) is neither invited nor kept, nor skipped. A match whose asker
        was erased since it was ranked is dropped whole.
        """
        session, now = self._session, self._now
        match, tenant = event.data, event.tenant
        thread_id = match.question.thread_id
        state = await session.get(ThreadState, (tenant, thread_id), with_for_update=True)
        erased = await erased_for(
            session, tenant=tenant, ranked_at=event.time, candidates=match.candidates, others=_others_of(match)
        )
        if match.question.author_id in erased:
            return []
        if state is None:
            state = ThreadState(tenant=tenant, thread_id=thread_id, rounds=1, escalate_at=now + policy.escalation_delay)
            session.add(state)
        # The latest match of the thread is the one escalation draws from.
        candidates = [c for c in match.candidates if c.person_id not in erased]
        state.question = match.question.model_dump(mode="json")
        state.participants = [p for p in match.participants if p not in erased]
        state.candidates = [c.model_dump(mode="json") for c in candidates]
        state.match_event_id, state.matched_at, state.updated_at = str(event.id), event.time, now
        invited = await invited_people(session, tenant=tenant, thread_id=thread_id)
        # The first round never goes past the thread's total, whatever a tenant set as the first count.
        room = min(policy.initial, policy.total) - len(invited)
        if room <= 0:
            return []
        created = await invite(
            session, state=state, candidates=candidates, invited=invited, room=room, round_=1, policy=policy, now=now
        )
        if not created.invitations and not invited and nobody_close_enough(candidates, invited, policy):
            # Nobody's answers come close to the question: escalating would find nobody either.
            state.close(Closed.NO_ONE_CLOSE_ENOUGH, now)
        elif created.invitations and state.closed_reason == Closed.NO_ONE_CLOSE_ENOUGH:
            # A later match (the question edited, more posts indexed) found someone after all.
            state.reopen(now + policy.escalation_delay, now)
        if self._lease is not None:
            self.leased.extend(_lease(created.deliveries, now=now, lease=self._lease))
        return created.invitations


def _lease(queued: Sequence[tuple[Delivery, Subscription]], *, now: datetime, lease: timedelta) -> list[DueDelivery]:
    """Claim new pending deliveries as `claim_due` would: not due for anyone else until `lease` is over."""
    due = []
    for delivery, subscription in queued:
        if delivery.state == DeliveryState.PENDING:
            delivery.next_attempt_at = now + lease
            due.append(due_delivery(delivery, subscription, now))
    return due


def _others_of(match: Match) -> list[str]:
    """The match's people other than its candidates: the asker and those who already replied."""
    return [match.question.author_id, *match.participants]


async def invited_people(session: AsyncSession, *, tenant: str, thread_id: str) -> set[str]:
    found = await session.scalars(
        sa.select(Invitation.person_id).where(Invitation.tenant == tenant, Invitation.thread_id == thread_id)
    )
    return set(found.all())


async def invite(
    session: AsyncSession,
    *,
    state: ThreadState,
    candidates: Sequence[Candidate],
    invited: set[str],
    room: int,
    round_: int,
    policy: InvitePolicy,
    now: datetime,
) -> Invited:
    """Apply the policy to a thread's candidates: store the invitations, their webhooks and the skips."""
    question = Question.model_validate(state.question)
    people = await load_people(session, tenant=state.tenant, person_ids=[c.person_id for c in candidates], now=now)
    plan = plan_invitations(
        candidates,
        room=room,
        policy=policy,
        now=now,
        people=people,
        asker=question.author_id,
        participants=set(state.participants),
        already_invited=invited,
    )
    await _record_skips(session, state=state, skipped=plan.skipped, round_=round_, now=now)
    created = [_invitation(state, question, candidate, round_=round_, now=now) for candidate in plan.invite]
    queued: list[tuple[Delivery, Subscription]] = []
    if created:
        subscriptions = (await session.scalars(_deliverable_subscriptions(state.tenant))).all()
        session.add_all(created)
        # Flushed, all in one statement, before their deliveries so the foreign keys hold on PostgreSQL.
        await session.flush()
        for invitation, candidate in zip(created, plan.invite, strict=True):
            body = invitation_payload(
                invitation_id=invitation.id, question=question, candidate=candidate, created_at=now
            ).decode()
            queued.extend((_pending(invitation, sub, body, now), sub) for sub in subscriptions)
        session.add_all(delivery for delivery, _ in queued)
    _log_decision(session, state=state, question=question, invited=created, skipped=plan.skipped, round_=round_)
    return Invited(created, queued)


def _invitation(
    state: ThreadState, question: Question, candidate: Candidate, *, round_: int, now: datetime
) -> Invitation:
    return Invitation(
        id=new_id("inv"),
        tenant=state.tenant,
        thread_id=state.thread_id,
        person_id=candidate.person_id,
        question_post_id=question.post_id,
        question_title=question.title,
        question_url=question.url,
        score=candidate.score,
        evidence=[e.model_dump(mode="json") for e in candidate.evidence],
        parts=dict(candidate.parts),
        match_event_id=state.match_event_id,
        created_at=now,
        round=round_,
        why=why_you(candidate),
        track_record=candidate.track_record.model_dump(mode="json") if candidate.track_record else None,
    )


async def _record_skips(
    session: AsyncSession, *, state: ThreadState, skipped: Sequence[Skip], round_: int, now: datetime
) -> None:
    """One row per person and reason and thread: the first time the policy gave that reason."""
    if not skipped:
        return
    known = set(
        (
            await session.execute(
                sa.select(InvitationSkip.person_id, InvitationSkip.reason).where(
                    InvitationSkip.tenant == state.tenant, InvitationSkip.thread_id == state.thread_id
                )
            )
        ).all()
    )
    new: collections.Counter[str] = collections.Counter()
    for skip in skipped:
        if (skip.candidate.person_id, skip.reason.value) in known:
            continue
        known.add((skip.candidate.person_id, skip.reason.value))
        new[skip.reason.value] += 1
        session.add(
            InvitationSkip(
                tenant=state.tenant,
                thread_id=state.thread_id,
                person_id=skip.candidate.person_id,
                reason=skip.reason.value,
                score=skip.candidate.score,
                round=round_,
                decided_at=now,
            )
        )
    if new:
        # Counted once the decisions are committed: a transaction rolled back and replayed decides again.
        sa.event.listen(session.sync_session, "after_commit", lambda _: _count_skips(new), once=True)


def _log_decision(
    session: AsyncSession,
    *,
    state: ThreadState,
    question: Question,
    invited: Sequence[Invitation],
    skipped: Sequence[Skip],
    round_: int,
) -> None:
    """Who was invited, who was passed over and why: one line once committed (a transaction rolled back
    and replayed decides again)."""
    fields = {
        "event": "invite", "tenant": state.tenant, "thread_id": state.thread_id, "post_id": question.post_id,
        "round": round_,
        "invited": [{"person_id": i.person_id, "invitation_id": i.id, "score": round(i.score, 4)} for i in invited],
        "skipped": [{"person_id": s.candidate.person_id, "reason": s.reason.value} for s in skipped],
    }
    message = "thread %s, round %d: invited %s; passed over %s"
    args = (
        state.thread_id, round_, ", ".join(i.person_id for i in invited) or "nobody",
        ", ".join(f"{s.candidate.person_id} ({s.reason.value})" for s in skipped) or "nobody",
    )
    # Logged in the context of the decision (its event's ids), though the commit may come after others.
    decided = contextvars.copy_context()
    sa.event.listen(
        session.sync_session, "after_commit",
        lambda _: decided.run(log.info, message, *args, extra=fields), once=True,
    )


def _count_skips(skips: collections.Counter[str]) -> None:
    for reason, count in skips.items():
        metrics.SKIPS.labels(reason).inc(count)


def _deliverable_subscriptions(tenant: str) -> sa.Select:
    # Disabled endpoints get their deliveries too, already failed: a replay after enabling sends them.
    return sa.select(Subscription).where(Subscription.tenant == tenant, Subscription.deleted_at.is_(None))


def _pending(invitation: Invitation, subscription: Subscription, body: str, now: datetime) -> Delivery:
    disabled = subscription.disabled_at is not None
    return Delivery(
        id=new_id("dlv"),
        tenant=invitation.tenant,
        subscription_id=subscription.id,
        invitation_id=invitation.id,
        message_id=new_id("msg"),
        type=INVITATION_CREATED,
        payload=body,
        state=DeliveryState.FAILED if disabled else DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=None if disabled else now,
        last_error=f"endpoint disabled: {subscription.disabled_reason}" if disabled else None,
        created_at=now,
        # Recorded inside the match's span: the delivery's attempts join the question's trace.
        traceparent=tracing.traceparent(),
    )


async def get(db: Database, *, tenant: str, invitation_id: str) -> Invitation | None:
    async with db.sessions() as session:
        found = await session.get(Invitation, invitation_id)
    return found if found is not None and found.tenant == tenant else None


async def list_for(
    db: Database, *, tenant: str, thread_id: str | None = None, limit: int = 50
) -> list[InvitationView]:
    """The tenant's invitations, newest first, each with its deliveries."""
    query = sa.select(Invitation).where(Invitation.tenant == tenant)
    if thread_id is not None:
        query = query.where(Invitation.thread_id == thread_id)
    query = query.order_by(Invitation.created_at.desc(), Invitation.id.desc()).limit(limit)
    async with db.sessions() as session:
        invitations = list((await session.scalars(query)).all())
        ids = [invitation.id for invitation in invitations]
        deliveries = (
            await session.scalars(
                sa.select(Delivery).where(Delivery.invitation_id.in_(ids)).order_by(Delivery.created_at, Delivery.id)
            )
        ).all()
    by_invitation: dict[str, list[Delivery]] = {id_: [] for id_ in ids}
    for delivery in deliveries:
        by_invitation[delivery.invitation_id].append(delivery)
    return [InvitationView(invitation, by_invitation[invitation.id]) for invitation in invitations]
