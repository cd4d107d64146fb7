"""The delivery queue in the database: claim what is due, record each attempt and its outcome.

Claiming moves a delivery's `next_attempt_at` past a lease, so no other worker sees it as due
while it is being sent; on PostgreSQL the claim also skips rows another replica is claiming.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from services.notifier.models import Delivery, DeliveryAttempt, DeliveryState, Subscription
from services.notifier.store.database import Database
from services.notifier.store.subscriptions import fail_pending


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """Everything needed to send one attempt, read while the delivery was claimed."""

    id: str
    message_id: str
    subscription_id: str
    url: str
    secret: str
    payload: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt decided: delivered, retry at `next_attempt_at`, or failed for good."""

    state: str
    next_attempt_at: datetime | None = None
    # Set when the endpoint told us to stop (410 Gone): the subscription is disabled.
    disable_reason: str | None = None


async def claim_due(db: Database, *, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
    """Take up to `limit` pending deliveries due by `now`, oldest first, for `lease`."""
    query = (
        sa.select(Delivery)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if db.is_postgres:
        query = query.with_for_update(skip_locked=True)
    async with db.transaction() as session:
        deliveries = list((await session.scalars(query)).all())
        if not deliveries:
            return []
        ids = {d.subscription_id for d in deliveries}
        subscriptions = {
            s.id: s for s in (await session.scalars(sa.select(Subscription).where(Subscription.id.in_(ids)))).all()
        }
        due = []
        for delivery in deliveries:
            subscription = subscriptions[delivery.subscription_id]
            if subscription.disabled_at is not None:
                delivery.state, delivery.next_attempt_at = DeliveryState.FAILED, None
                delivery.last_error = f"subscription disabled: {subscription.disabled_reason}"
                continue
            delivery.next_attempt_at = now + lease
            due.append(_due(delivery, subscription))
    return due


def _due(delivery: Delivery, subscription: Subscription) -> DueDelivery:
    return DueDelivery(
        id=delivery.id,
        message_id=delivery.message_id,
        subscription_id=subscription.id,
        url=subscription.url,
        secret=subscription.secret,
        payload=delivery.payload.encode(),
        attempts=delivery.attempts,
    )


async def record_attempt(
    db: Database,
    *,
    due: DueDelivery,
    attempt: DeliveryAttempt,
    outcome: Outcome,
) -> None:
    """Store one attempt and move its delivery (and, on 410, its subscription) to the outcome."""
    async with db.transaction() as session:
        attempt.delivery_id = due.id
        session.add(attempt)
        delivery = await session.get(Delivery, due.id, with_for_update=True)
        if delivery is None:
            raise LookupError(f"delivery {due.id} vanished while it was being sent")
        delivery.attempts += 1
        delivery.last_status, delivery.last_error = attempt.status_code, attempt.error
        if delivery.state != DeliveryState.PENDING:
            return  # failed meanwhile (subscription deleted): the attempt is history only
        delivery.state, delivery.next_attempt_at = outcome.state, outcome.next_attempt_at
        if outcome.state == DeliveryState.DELIVERED:
            delivery.delivered_at = attempt.attempted_at
        if outcome.disable_reason:
            await _disable(session, due.subscription_id, outcome.disable_reason, attempt.attempted_at)


async def _disable(session, subscription_id: str, reason: str, now: datetime) -> None:
    subscription = await session.get(Subscription, subscription_id, with_for_update=True)
    if subscription is not None and subscription.disabled_at is None:
        subscription.disabled_at, subscription.disabled_reason = now, reason
    await fail_pending(session, subscription_id=subscription_id, reason=reason)


async def get(db: Database, delivery_id: str) -> Delivery | None:
    async with db.sessions() as session:
        return await session.get(Delivery, delivery_id)


async def attempts_of(db: Database, delivery_id: str) -> list[DeliveryAttempt]:
    """Every attempt at one delivery, in the order they were made."""
    query = sa.select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.id)
    async with db.sessions() as session:
        return list((await session.scalars(query)).all())
