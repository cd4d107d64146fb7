"""Webhook subscriptions of a tenant: create, list, look up, rotate, enable, delete (kept for history)."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from services.notifier.models import Delivery, DeliveryState, Subscription
from services.notifier.signing import new_secret
from services.notifier.store.database import Database, new_id


async def create(db: Database, *, tenant: str, url: str, description: str | None, now: datetime) -> Subscription:
    """A new active subscription with a freshly generated secret."""
    subscription = Subscription(
        id=new_id("sub"), tenant=tenant, url=url, secret=new_secret(), description=description, created_at=now
    )
    async with db.transaction() as session:
        session.add(subscription)
    return subscription


async def list_for(db: Database, *, tenant: str) -> list[Subscription]:
    """The tenant's subscriptions, oldest first; disabled ones included, deleted ones not."""
    query = (
        sa.select(Subscription)
        .where(Subscription.tenant == tenant, Subscription.deleted_at.is_(None))
        .order_by(Subscription.created_at, Subscription.id)
    )
    async with db.sessions() as session:
        return list((await session.scalars(query)).all())


async def get(db: Database, *, tenant: str, subscription_id: str) -> Subscription | None:
    """One of the tenant's subscriptions; None for another tenant's id or a deleted one."""
    async with db.sessions() as session:
        found = await session.get(Subscription, subscription_id)
    if found is None or found.tenant != tenant or found.deleted_at is not None:
        return None
    return found


async def delete(db: Database, *, tenant: str, subscription_id: str, now: datetime) -> bool:
    """Stop sending to it (its pending deliveries fail); False if the tenant has no such subscription."""
    async with db.transaction() as session:
        found = await session.get(Subscription, subscription_id, with_for_update=True)
        if found is None or found.tenant != tenant or found.deleted_at is not None:
            return False
        found.deleted_at = now
        if found.disabled_at is None:
            found.disabled_at, found.disabled_reason = now, "deleted"
        await fail_pending(session, subscription_id=subscription_id, reason="subscription deleted")
    return True


async def rotate_secret(
    db: Database, *, tenant: str, subscription_id: str, overlap: timedelta, now: datetime
) -> Subscription | None:
    """A new secret; the old one keeps signing beside it for `overlap`. None if no such subscription."""
    async with db.transaction() as session:
        found = await _owned(session, tenant, subscription_id)
        if found is None:
            return None
        found.previous_secret, found.previous_secret_until = found.secret, now + overlap
        found.secret = new_secret()
    return found


async def enable(db: Database, *, tenant: str, subscription_id: str) -> Subscription | None:
    """Send to it again; what it missed comes only with a replay. None if no such subscription."""
    async with db.transaction() as session:
        found = await _owned(session, tenant, subscription_id)
        if found is None:
            return None
        found.disabled_at, found.disabled_reason, found.failing_since = None, None, None
    return found


async def _owned(session, tenant: str, subscription_id: str) -> Subscription | None:
    found = await session.get(Subscription, subscription_id, with_for_update=True)
    if found is None or found.tenant != tenant or found.deleted_at is not None:
        return None
    return found


async def fail_pending(session, *, subscription_id: str, reason: str) -> None:
    """Give up every pending delivery to a subscription that will not receive any more."""
    await session.execute(
        sa.update(Delivery)
        .where(Delivery.subscription_id == subscription_id, Delivery.state == DeliveryState.PENDING)
        .values(state=DeliveryState.FAILED, next_attempt_at=None, last_error=reason)
    )
