"""`/v1/deliveries`: every webhook delivery and each of its attempts (time, status, duration, error)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.notifier.models import DeliveryState
from services.notifier.routes import DatabaseDep, TenantDep
from services.notifier.store import deliveries
from services.notifier.store.deliveries import DeliveryView
from shared.errors import error_responses
from shared.fields import text_field

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"], responses=error_responses(401, 422))


class AttemptOut(BaseModel):
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


class DeliveryDetail(BaseModel):
    id: str
    subscription_id: str
    invitation_id: str
    message_id: str
    type: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[AttemptOut]

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


@router.get("")
async def list_deliveries(
    tenant: TenantDep,
    db: DatabaseDep,
    subscription_id: Annotated[text_field(max_length=40) | None, Query()] = None,
    invitation_id: Annotated[text_field(max_length=40) | None, Query()] = None,
    state: Annotated[DeliveryState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryDetail]:
    found = await deliveries.search(
        db, tenant=tenant, subscription_id=subscription_id, invitation_id=invitation_id, state=state, limit=limit
    )
    return [DeliveryDetail.of(view) for view in found]
