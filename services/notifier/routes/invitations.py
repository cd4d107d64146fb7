"""`/v1/invitations`: who was invited to which thread, and how far each webhook got."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.notifier.routes import DatabaseDep
from services.notifier.store import invitations
from services.notifier.store.invitations import InvitationView
from shared.auth import TenantDep

router = APIRouter(prefix="/v1/invitations", tags=["invitations"])


class DeliveryOut(BaseModel):
    subscription_id: str
    message_id: str
    state: str
    attempts: int
    last_status: int | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class InvitationOut(BaseModel):
    id: str
    thread_id: str
    person_id: str
    question_post_id: str
    question_title: str | None
    question_url: str | None
    score: float
    evidence: list[dict[str, Any]]
    parts: dict[str, float]
    created_at: datetime
    deliveries: list[DeliveryOut]

    @classmethod
    def of(cls, view: InvitationView) -> "InvitationOut":
        inv = view.invitation
        return cls(
            id=inv.id,
            thread_id=inv.thread_id,
            person_id=inv.person_id,
            question_post_id=inv.question_post_id,
            question_title=inv.question_title,
            question_url=inv.question_url,
            score=inv.score,
            evidence=inv.evidence,
            parts=inv.parts,
            created_at=inv.created_at,
            deliveries=[
                DeliveryOut(
                    subscription_id=d.subscription_id,
                    message_id=d.message_id,
                    state=d.state,
                    attempts=d.attempts,
                    last_status=d.last_status,
                    next_attempt_at=d.next_attempt_at,
                    delivered_at=d.delivered_at,
                )
                for d in view.deliveries
            ],
        )


@router.get("")
async def list_invitations(
    tenant: TenantDep,
    db: DatabaseDep,
    thread_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InvitationOut]:
    views = await invitations.list_for(db, tenant=tenant, thread_id=thread_id, limit=limit)
    return [InvitationOut.of(view) for view in views]
