"""The delivery queue in the database: claim what is due, record each attempt and its outcome.

Claiming moves a delivery's `next_attempt_at` past a lease, so no other worker sees it as due
while it is being sent; on PostgreSQL the claim also skips rows another replica is claiming.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import Delivery, DeliveryAttempt, DeliveryState, Subscription
from services.notifier.store.database import Database
from services.notifier.store.subscriptions import fail_pending

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """Everything needed to send one attempt, read while the delivery was claimed."""

    id: str
    tenant: str
    invitation_id: str
    message_id: str
    subscription_id: str
    url: str
    # The current secret first, then the previous one while a rotation's overlap lasts.
    secrets: tuple[str, ...]
    payload: bytes
    attempts: int
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt decided: delivered, retry at `next_attempt_at`, or failed for good."""

    state: DeliveryState
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
        await db.write_lock(session)
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
            due.append(due_delivery(delivery, subscription, now))
    return due


def _signing_secrets(subscription: Subscription, now: datetime) -> tuple[str, ...]:
    overlap = subscription.previous_secret_until
    if subscription.previous_secret and overlap is not None and overlap > now:
        return (subscription.secret, subscription.previous_secret)
    return (subscription.secret,)


def due_delivery(delivery: Delivery, subscription: Subscription, now: datetime) -> DueDelivery:
    """What sending a claimed delivery needs, signed with the secrets valid at `now`."""
    return DueDelivery(
        id=delivery.id,
        tenant=delivery.tenant,
        invitation_id=delivery.invitation_id,
        message_id=delivery.message_id,
        subscription_id=subscription.id,
        url=subscription.url,
        secrets=_signing_secrets(subscription, now),
        payload=delivery.payload.encode(),
        attempts=delivery.attempts,
        traceparent=delivery.traceparent,
    )


@dataclass(frozen=True, slots=True)
class Attempted:
    """One attempt made at a claimed delivery, and what its answer decided."""

    due: DueDelivery
    attempt: DeliveryAttempt
    outcome: Outcome


async def record_attempt(
    db: Database,
    *,
    due: DueDelivery,
    attempt: DeliveryAttempt,
    outcome: Outcome,
    disable_after: timedelta | None = None,
) -> None:
    """Store one attempt and move its delivery to the outcome (see `record_attempts`)."""
    await record_attempts(db, [Attempted(due, attempt, outcome)], disable_after=disable_after)


async def record_attempts(
    db: Database, attempted: Sequence[Attempted], *, disable_after: timedelta | None = None
) -> list[Attempted]:
    """Store attempts and move each delivery to its outcome, in order, in one transaction (one sync
    on SQLite however many); disable an endpoint on 410 or after failing for `disable_after`
    without a success in between. Returns those recorded: a delivery erased meanwhile has none."""
    recorded = []
    async with db.transaction() as session:
        for item in attempted:
            if await _record(session, item, disable_after=disable_after):
                recorded.append(item)
    return recorded


async def _record(session: AsyncSession, item: Attempted, *, disable_after: timedelta | None) -> bool:
    due, attempt, outcome = item.due, item.attempt, item.outcome
    delivery = await session.get(Delivery, due.id, with_for_update=True)
    if delivery is None:
        log.warning("delivery %s vanished while it was being sent (its person erased): not recorded", due.id)
        return False
    attempt.delivery_id = due.id
    session.add(attempt)
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = attempt.status_code, attempt.error
    if delivery.state != DeliveryState.PENDING:
        return True  # failed meanwhile (subscription deleted): the attempt is history only
    delivery.state, delivery.next_attempt_at = outcome.state, outcome.next_attempt_at
    if outcome.state == DeliveryState.DELIVERED:
        delivery.delivered_at = attempt.attempted_at
    reason = outcome.disable_reason or await _track_health(
        session, due.subscription_id, attempt, delivered=outcome.state == DeliveryState.DELIVERED,
        disable_after=disable_after,
    )
    if reason:
        await _disable(session, due.subscription_id, reason, attempt.attempted_at)
    return True


async def _track_health(
    session, subscription_id: str, attempt: DeliveryAttempt, *, delivered: bool, disable_after: timedelta | None
) -> str | None:
    """Note when an endpoint started failing; the reason to disable it once that was too long ago."""
    subscription = await session.get(Subscription, subscription_id, with_for_update=True)
    if subscription is None:
        return None
    if delivered:
        subscription.failing_since = None
        return None
    if subscription.failing_since is None:
        subscription.failing_since = attempt.attempted_at
        return None
    if disable_after is not None and attempt.attempted_at - subscription.failing_since >= disable_after:
        days = disable_after.total_seconds() / 86400
        return f"failing for {days:g} days without a success since {subscription.failing_since.isoformat()}"
    return None


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


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery with every attempt made at it, oldest first."""

    delivery: Delivery
    attempts: list[DeliveryAttempt]


async def search(
    db: Database,
    *,
    tenant: str,
    subscription_id: str | None = None,
    invitation_id: str | None = None,
    state: DeliveryState | None = None,
    limit: int = 100,
) -> list[DeliveryView]:
    """The tenant's deliveries, newest first, filtered by whichever of the arguments are given."""
    query = sa.select(Delivery).where(Delivery.tenant == tenant)
    for column, value in (
        (Delivery.subscription_id, subscription_id),
        (Delivery.invitation_id, invitation_id),
        (Delivery.state, state),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)
    async with db.sessions() as session:
        found = list((await session.scalars(query)).all())
        attempts = (
            await session.scalars(
                sa.select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_([d.id for d in found]))
                .order_by(DeliveryAttempt.id)
            )
        ).all()
    by_delivery: dict[str, list[DeliveryAttempt]] = {d.id: [] for d in found}
    for attempt in attempts:
        by_delivery[attempt.delivery_id].append(attempt)
    return [DeliveryView(d, by_delivery[d.id]) for d in found]


class EndpointDisabled(Exception):
    """Replay was asked of a disabled subscription: enable it first."""


async def replay(db: Database, *, subscription: Subscription, since: datetime, now: datetime) -> int:
    """Queue again every failed delivery to this endpoint created since `since`, with its webhook-id."""
    async with db.transaction() as session:
        current = await session.get(Subscription, subscription.id, with_for_update=True)
        if current is None or current.disabled_at is not None:
            raise EndpointDisabled(subscription.id)
        result = await session.execute(
            sa.update(Delivery)
            .where(
                Delivery.subscription_id == subscription.id,
                Delivery.state == DeliveryState.FAILED,
                Delivery.created_at >= since,
            )
            # attempts restart so the retry schedule applies afresh; the attempts' history stays.
            .values(state=DeliveryState.PENDING, next_attempt_at=now, attempts=0)
        )
    return result.rowcount


@dataclass(frozen=True, slots=True)
class Backlog:
    """What waits to be sent as of `now`: the figures behind the notifier's delivery gauges."""

    pending: int
    due: int
    overdue: int
    oldest_due_seconds: float
    endpoints_disabled: int
    endpoints_failing: int


async def backlog(db: Database, *, now: datetime, overdue_after: timedelta) -> Backlog:
    """Pending deliveries (due now, and due for longer than `overdue_after`), and endpoints disabled or failing.

    Deliveries of a disabled endpoint count until a worker claims them and marks them failed.
    """
    pending = Delivery.state == DeliveryState.PENDING
    due = sa.and_(pending, Delivery.next_attempt_at <= now)
    deliveries = sa.select(
        sa.func.count().filter(pending),
        sa.func.count().filter(due),
        sa.func.count().filter(sa.and_(due, Delivery.next_attempt_at <= now - overdue_after)),
        sa.func.min(Delivery.next_attempt_at).filter(due),
    ).where(pending)
    live = Subscription.deleted_at.is_(None)
    endpoints = sa.select(
        sa.func.count().filter(Subscription.disabled_at.is_not(None)),
        sa.func.count().filter(sa.and_(Subscription.disabled_at.is_(None), Subscription.failing_since.is_not(None))),
    ).where(live)
    async with db.sessions() as session:
        total, due_now, overdue, oldest = (await session.execute(deliveries)).one()
        disabled, failing = (await session.execute(endpoints)).one()
    return Backlog(
        pending=total, due=due_now, overdue=overdue,
        oldest_due_seconds=(now - oldest).total_seconds() if oldest is not None else 0.0,
        endpoints_disabled=disabled, endpoints_failing=failing,
    )
