"""`/v1/subscriptions`: where a tenant's invitations go; secrets (shown once), rotation, enable, replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notifier.clock import utcnow
from services.notifier.egress import ForbiddenDestination, check_destination, webhook_target
from services.notifier.models import Subscription
from services.notifier.routes import DatabaseDep, NotifierDep, NowDep, TenantDep, invalid, not_found
from services.notifier.store import deliveries, subscriptions
from services.notifier.store.deliveries import EndpointDisabled
from shared.errors import error_responses
from shared.fields import Instant, Text, text_field

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], responses=error_responses(401))
FOUND = error_responses(404, 422)


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: text_field(strip=True, max_length=2048)
    description: text_field(max_length=500) | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        webhook_target(value)  # a ForbiddenDestination is a ValueError: 422 naming url
        return value


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str | None
    created_at: datetime
    state: Literal["active", "disabled"]
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    failing_since: datetime | None = None

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionOut:
        return cls(
            id=subscription.id,
            url=subscription.url,
            description=subscription.description,
            created_at=subscription.created_at,
            state="active" if subscription.disabled_at is None else "disabled",
            disabled_at=subscription.disabled_at,
            disabled_reason=subscription.disabled_reason,
            failing_since=subscription.failing_since,
        )


class CreatedSubscription(SubscriptionOut):
    secret: str = Field(description="Verifies the webhooks' signatures; shown only in this answer.")


class RotatedSecret(BaseModel):
    id: str
    secret: str = Field(description="The new secret; shown only in this answer.")
    previous_secret_valid_until: datetime = Field(description="Until then webhooks carry both signatures.")


class Replayed(BaseModel):
    id: str
    since: datetime
    replayed: int = Field(description="Deliveries queued again, each with its original webhook-id.")


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(422))
async def create_subscription(
    body: SubscriptionIn, notifier: NotifierDep, tenant: TenantDep, db: DatabaseDep
) -> CreatedSubscription:
    try:
        await check_destination(body.url, allow=notifier.allow_list, resolve=notifier.resolver)
    except ForbiddenDestination as exc:
        raise invalid(["body", "url"], str(exc)) from None
    created = await subscriptions.create(db, tenant=tenant, url=body.url, description=body.description, now=utcnow())
    return CreatedSubscription(**SubscriptionOut.of(created).model_dump(), secret=created.secret)


@router.post("/{subscription_id}/rotate-secret", responses=FOUND)
async def rotate_secret(
    subscription_id: Text, notifier: NotifierDep, tenant: TenantDep, db: DatabaseDep, now: NowDep
) -> RotatedSecret:
    rotated = await subscriptions.rotate_secret(
        db, tenant=tenant, subscription_id=subscription_id, overlap=notifier.secret_overlap, now=now
    )
    if rotated is None:
        raise not_found(f"subscription {subscription_id}")
    return RotatedSecret(
        id=rotated.id, secret=rotated.secret, previous_secret_valid_until=rotated.previous_secret_until
    )


@router.post("/{subscription_id}/enable", responses=FOUND)
async def enable_subscription(subscription_id: Text, tenant: TenantDep, db: DatabaseDep) -> SubscriptionOut:
    enabled = await subscriptions.enable(db, tenant=tenant, subscription_id=subscription_id)
    if enabled is None:
        raise not_found(f"subscription {subscription_id}")
    return SubscriptionOut.of(enabled)


@router.post("/{subscription_id}/replay", responses=error_responses(404, 409, 422))
async def replay(
    subscription_id: Text,
    since: Annotated[Instant, Query(description="Resend what failed from this time on.")],
    notifier: NotifierDep,
    tenant: TenantDep,
    db: DatabaseDep,
    now: NowDep,
) -> Replayed:
    found = await subscriptions.get(db, tenant=tenant, subscription_id=subscription_id)
    if found is None:
        raise not_found(f"subscription {subscription_id}")
    try:
        count = await deliveries.replay(db, subscription=found, since=since, now=now)
    except EndpointDisabled:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"subscription {subscription_id} is disabled: enable it first"
        ) from None
    notifier.worker.wake()
    return Replayed(id=subscription_id, since=since, replayed=count)


@router.get("")
async def list_subscriptions(tenant: TenantDep, db: DatabaseDep) -> list[SubscriptionOut]:
    return [SubscriptionOut.of(s) for s in await subscriptions.list_for(db, tenant=tenant)]


@router.get("/{subscription_id}", responses=FOUND)
async def get_subscription(subscription_id: Text, tenant: TenantDep, db: DatabaseDep) -> SubscriptionOut:
    found = await subscriptions.get(db, tenant=tenant, subscription_id=subscription_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return SubscriptionOut.of(found)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses=FOUND)
async def delete_subscription(subscription_id: Text, tenant: TenantDep, db: DatabaseDep) -> Response:
    if not await subscriptions.delete(db, tenant=tenant, subscription_id=subscription_id, now=utcnow()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
