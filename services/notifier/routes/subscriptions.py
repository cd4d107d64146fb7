"""`/v1/subscriptions`: where a tenant's invitations are sent; the secret is shown once, at creation."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notifier.delivery import utcnow
from services.notifier.models import Subscription
from services.notifier.routes import DatabaseDep
from services.notifier.store import subscriptions
from shared.auth import TenantDep

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.strip()


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str | None
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    @classmethod
    def of(cls, subscription: Subscription) -> "SubscriptionOut":
        return cls(
            id=subscription.id,
            url=subscription.url,
            description=subscription.description,
            created_at=subscription.created_at,
            disabled_at=subscription.disabled_at,
            disabled_reason=subscription.disabled_reason,
        )


class CreatedSubscription(SubscriptionOut):
    secret: str = Field(description="Verifies the webhooks' signatures; shown only in this answer.")


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_subscription(body: SubscriptionIn, tenant: TenantDep, db: DatabaseDep) -> CreatedSubscription:
    created = await subscriptions.create(db, tenant=tenant, url=body.url, description=body.description, now=utcnow())
    return CreatedSubscription(**SubscriptionOut.of(created).model_dump(), secret=created.secret)


@router.get("")
async def list_subscriptions(tenant: TenantDep, db: DatabaseDep) -> list[SubscriptionOut]:
    return [SubscriptionOut.of(s) for s in await subscriptions.list_for(db, tenant=tenant)]


@router.get("/{subscription_id}")
async def get_subscription(subscription_id: str, tenant: TenantDep, db: DatabaseDep) -> SubscriptionOut:
    found = await subscriptions.get(db, tenant=tenant, subscription_id=subscription_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return SubscriptionOut.of(found)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_subscription(subscription_id: str, tenant: TenantDep, db: DatabaseDep) -> Response:
    if not await subscriptions.delete(db, tenant=tenant, subscription_id=subscription_id, now=utcnow()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no subscription {subscription_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
