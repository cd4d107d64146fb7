"""`/v1/deliveries`: every webhook delivery and each of its attempts (time, status, duration, error)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.notifier.models import DeliveryState
from services.notifier.routes import DatabaseDep, TenantDep
from services.notifier.routes.fields import (
    Attempts,
    DeliveredAt,
    LastStatus,
    MessageId,
    NextAttemptAt,
    State,
    SubscriptionRef,
)
from services.notifier.store import deliveries
from services.notifier.store.deliveries import DeliveryView
from shared.errors import error_responses
from shared.fields import text_field

# The ids the notifier makes (`sub_...`, `inv_...`) are 36 characters.
NotifierId = text_field(max_length=40)

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"], responses=error_responses(401, 422))


class AttemptOut(BaseModel):
    """One request made to the subscription's URL."""

    attempted_at: datetime = Field(description="When it was sent (UTC).", examples=["2025-05-02T09:30:04Z"])
    status_code: int | None = Field(description="The receiver's HTTP status; `null` when no answer came.",
                                    examples=[500])
    duration_ms: int = Field(description="How long the receiver took to answer, in milliseconds.", examples=[212])
    error: str | None = Field(
        description="`null` on a 2xx; else what went wrong: `HTTP 500`, `ConnectError: ...`, or `refused: ...` for "
        "an address webhooks may not reach.",
        examples=["HTTP 500"],
    )


class DeliveryDetail(BaseModel):
    """One webhook to one subscription, and every attempt made at it."""

    id: str = Field(description="The delivery's id.", examples=["dlv_1a2b3c4d5e6f40718293a4b5c6d7e8f9"])
    subscription_id: SubscriptionRef
    invitation_id: str = Field(description="The invitation it tells of.",
                               examples=["inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f"])
    message_id: MessageId
    type: str = Field(description="The kind of webhook.", examples=["invitation.created"])
    state: State
    attempts: Attempts
    next_attempt_at: NextAttemptAt
    last_status: LastStatus
    last_error: str | None = Field(description="What went wrong last (as `error` of an attempt, or why it was given "
                                   "up); `null` once delivered.", examples=["HTTP 500"])
    created_at: datetime = Field(description="When it was queued (UTC).", examples=["2025-05-02T09:30:04Z"])
    delivered_at: DeliveredAt
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first, replays included.")

    @classmethod
    def of(cls, view: DeliveryView) -> DeliveryDetail:
        d = view.delivery
        return cls(
            id=d.id,
            subscription_id=d.subscription_id,
            invitation_id=d.invitation_id,
            message_id=d.message_id,
            type=d.type,
            state=d.state,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_status=d.last_status,
            last_error=d.last_error,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            attempt_log=[
                AttemptOut(
                    attempted_at=a.attempted_at, status_code=a.status_code, duration_ms=a.duration_ms, error=a.error
                )
                for a in view.attempts
            ],
        )


@router.get("", summary="List webhook deliveries")
async def list_deliveries(
    tenant: TenantDep,
    db: DatabaseDep,
    subscription_id: Annotated[NotifierId | None, Query(description="Only to this subscription.")] = None,
    invitation_id: Annotated[NotifierId | None, Query(description="Only of this invitation.")] = None,
    state: Annotated[DeliveryState | None, Query(description="Only in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many, 1-500.")] = 100,
) -> list[DeliveryDetail]:
    """The tenant's webhook deliveries, newest first, each with every attempt made at it."""
    found = await deliveries.search(
        db, tenant=tenant, subscription_id=subscription_id, invitation_id=invitation_id, state=state, limit=limit
    )
    return [DeliveryDetail.of(view) for view in found]
