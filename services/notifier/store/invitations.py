"""Invitations and their pending deliveries, written together in one transaction per match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from services.notifier.models import Delivery, DeliveryState, Invitation, Subscription
from services.notifier.payload import INVITATION_CREATED, invitation_payload
from services.notifier.policy import choose_invitees
from services.notifier.store.database import Database, new_id
from shared.events import ExpertsMatched


@dataclass(frozen=True, slots=True)
class InvitationView:
    """An invitation as its tenant sees it, with the state of each of its deliveries."""

    invitation: Invitation
    deliveries: list[Delivery]


async def record_match(db: Database, *, event: ExpertsMatched, limit: int, now: datetime) -> list[Invitation]:
    """Invite the chosen candidates of a match and queue their webhooks; idempotent per person and thread."""
    match, tenant = event.data, event.tenant
    thread_id = match.question.thread_id
    async with db.transaction() as session:
        invited = await session.scalars(
            sa.select(Invitation.person_id).where(Invitation.tenant == tenant, Invitation.thread_id == thread_id)
        )
        chosen = choose_invitees(
            match.candidates,
            already_invited=set(invited.all()),
            excluded={match.question.author_id, *match.participants},
            limit=limit,
        )
        if not chosen:
            return []
        subscriptions = (await session.scalars(_active_subscriptions(tenant))).all()
        invitations = []
        for candidate in chosen:
            invitation = Invitation(
                id=new_id("inv"),
                tenant=tenant,
                thread_id=thread_id,
                person_id=candidate.person_id,
                question_post_id=match.question.post_id,
                question_title=match.question.title,
                question_url=match.question.url,
                score=candidate.score,
                evidence=[e.model_dump(mode="json") for e in candidate.evidence],
                parts=dict(candidate.parts),
                match_event_id=str(event.id),
                created_at=now,
            )
            body = invitation_payload(
                invitation_id=invitation.id, question=match.question, candidate=candidate, created_at=now
            ).decode()
            session.add(invitation)
            # Flushed before its deliveries so the foreign keys hold on PostgreSQL.
            await session.flush()
            session.add_all(_pending(invitation, subscription, body, now) for subscription in subscriptions)
            invitations.append(invitation)
    return invitations


def _active_subscriptions(tenant: str) -> sa.Select:
    return sa.select(Subscription).where(Subscription.tenant == tenant, Subscription.disabled_at.is_(None))


def _pending(invitation: Invitation, subscription: Subscription, body: str, now: datetime) -> Delivery:
    return Delivery(
        id=new_id("dlv"),
        tenant=invitation.tenant,
        subscription_id=subscription.id,
        invitation_id=invitation.id,
        message_id=new_id("msg"),
        type=INVITATION_CREATED,
        payload=body,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


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
