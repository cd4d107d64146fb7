"""`/v1/subscriptions`: where a tenant's invitations go; secrets (shown once), rotation, enable, replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
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


SubscriptionId = Annotated[Text, Path(description="The subscription's id, as its creation answered it.")]


class SubscriptionIn(BaseModel):
    """Where to send the tenant's invitations."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"url": "https://intranet.example/hooks/expertmatch", "description": "invitations to threads"}
        ]},
    )

    url: text_field(strip=True, max_length=2048) = Field(
        description="An absolute `http://` or `https://` URL, up to 2,048 characters, whose host resolves to a "
        "public address (a private, loopback or link-local one is refused unless `NOTIFIER_ALLOWED_HOSTS` admits "
        "it); checked again at every delivery.",
        examples=["https://intranet.example/hooks/expertmatch"],
    )
    description: text_field(max_length=500) | None = Field(
        default=None, description="What the subscription is for, up to 500 characters; for people to read.",
        examples=["invitations to threads"],
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        webhook_target(value)  # a ForbiddenDestination is a ValueError: 422 naming url
        return value


class SubscriptionOut(BaseModel):
    """A URL of the intranet that receives the tenant's invitations."""

    id: str = Field(description="The subscription's id.", examples=["sub_3f9c0d6e1b2a4c5d8e7f60718293a4b5"])
    url: str = Field(description="Where the webhooks go.", examples=["https://intranet.example/hooks/expertmatch"])
    description: str | None = Field(description="What it is for, as given at creation.",
                                    examples=["invitations to threads"])
    created_at: datetime = Field(description="When it was created (UTC).", examples=["2025-05-01T08:00:00Z"])
    state: Literal["active", "disabled"] = Field(
        description="`active` while it receives webhooks; `disabled` once it answered 410 or kept failing "
        "(`NOTIFIER_DISABLE_AFTER`, 5 days by default), until enabled again.",
        examples=["active"],
    )
    disabled_at: datetime | None = Field(default=None, description="When it stopped receiving; `null` while active.",
                                         examples=[None])
    disabled_reason: str | None = Field(default=None, description="Why it stopped receiving; `null` while active.",
                                        examples=[None])
    failing_since: datetime | None = Field(
        default=None, description="Its first failed attempt since its last success; `null` while it succeeds.",
        examples=[None],
    )

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
    """A new subscription, with the secret that signs its webhooks."""

    secret: str = Field(
        description="Verifies the webhooks' signatures (Standard Webhooks, `whsec_...`); shown only in this answer: "
        "keep it on the receiving side.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class RotatedSecret(BaseModel):
    """A subscription's new secret; the old one keeps signing beside it for a while."""

    id: str = Field(description="The subscription's id.", examples=["sub_3f9c0d6e1b2a4c5d8e7f60718293a4b5"])
    secret: str = Field(description="The new secret; shown only in this answer.",
                        examples=["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"])
    previous_secret_valid_until: datetime = Field(
        description="Until then webhooks carry both signatures (`NOTIFIER_SECRET_OVERLAP`, a day by default).",
        examples=["2025-05-03T09:30:00Z"],
    )


class Replayed(BaseModel):
    """How many deliveries were queued again."""

    id: str = Field(description="The subscription's id.", examples=["sub_3f9c0d6e1b2a4c5d8e7f60718293a4b5"])
    since: datetime = Field(description="The `since` asked for, in UTC.", examples=["2025-05-01T00:00:00Z"])
    replayed: int = Field(description="Deliveries queued again, each with its original webhook-id.", examples=[7])


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(422), summary="Subscribe a URL")
async def create_subscription(
    body: SubscriptionIn, notifier: NotifierDep, tenant: TenantDep, db: DatabaseDep
) -> CreatedSubscription:
    """Send the tenant's invitations to a URL; the answer holds the signing secret, shown only here."""
    try:
        await check_destination(body.url, allow=notifier.allow_list, resolve=notifier.resolver)
    except ForbiddenDestination as exc:
        raise invalid(["body", "url"], str(exc)) from None
    created = await subscriptions.create(db, tenant=tenant, url=body.url, description=body.description, now=utcnow())
    return CreatedSubscription(**SubscriptionOut.of(created).model_dump(), secret=created.secret)


@router.post("/{subscription_id}/rotate-secret", responses=FOUND, summary="Rotate a subscription's secret")
async def rotate_secret(
    subscription_id: SubscriptionId, notifier: NotifierDep, tenant: TenantDep, db: DatabaseDep, now: NowDep
) -> RotatedSecret:
    """A new signing secret; until `previous_secret_valid_until` webhooks are signed with both."""
    rotated = await subscriptions.rotate_secret(
        db, tenant=tenant, subscription_id=subscription_id, overlap=notifier.secret_overlap, now=now
    )
    if rotated is None:
        raise not_found(f"subscription {subscription_id}")
    return RotatedSecret(
        id=rotated.id, secret=rotated.secret, previous_secret_valid_until=rotated.previous_secret_until
    )


@router.post("/{subscription_id}/enable", responses=FOUND, summary="Enable a disabled subscription")
async def enable_subscription(subscription_id: SubscriptionId, tenant: TenantDep, db: DatabaseDep) -> SubscriptionOut:
    """Receive webhooks again; what failed meanwhile is sent only on a replay."""
    enabled = await subscriptions.enable(db, tenant=tenant, subscription_id=subscription_id)
    if enabled is None:
        raise not_found(f"subscription {subscription_id}")
    return SubscriptionOut.of(enabled)


@router.post("/{subscription_id}/replay", responses=error_responses(404, 409, 422),
             summary="Resend what failed since a time")
async def replay(
    subscription_id: SubscriptionId,
    since: Annotated[Instant, Query(description="Resend what failed from this time on.")],
    notifier: NotifierDep,
    tenant: TenantDep,
    db: DatabaseDep,
    now: NowDep,
) -> Replayed:
    """Queue again the deliveries that failed (or were missed while disabled) from `since` on, each with its
    original `webhook-id`; the retry schedule starts afresh. A disabled subscription answers 409."""
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


@router.get("", summary="List the tenant's subscriptions")
async def list_subscriptions(tenant: TenantDep, db: DatabaseDep) -> list[SubscriptionOut]:
    """Oldest first, disabled ones included."""
    return [SubscriptionOut.of(s) for s in await subscriptions.list_for(db, tenant=tenant)]


@router.get("/{subscription_id}", responses=FOUND, summary="Get a subscription")
async def get_subscription(subscription_id: SubscriptionId, tenant: TenantDep, db: DatabaseDep) -> SubscriptionOut:
    """One subscription of the tenant's; a deleted one, or another tenant's, answers 404."""
    found = await subscriptions.get(db, tenant=tenant, subscription_id=subscription_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return SubscriptionOut.of(found)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses=FOUND,
               summary="Stop sending to a subscription")
async def delete_subscription(subscription_id: SubscriptionId, tenant: TenantDep, db: DatabaseDep) -> Response:
    """Delete it; its pending deliveries are given up, its history of deliveries stays."""
    if not await subscriptions.delete(db, tenant=tenant, subscription_id=subscription_id, now=utcnow()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
