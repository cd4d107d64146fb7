"""`/v1/invitations`: who was invited to which thread, how far each webhook got, and the invitees' responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from services.notifier.models import DeliveryState
from services.notifier.payload import stored_why
from services.notifier.routes import DatabaseDep, NotifierDep, NowDep, TenantDep, not_found
from services.notifier.store import invitations, responses
from services.notifier.store.invitations import InvitationView
from shared.errors import error_responses
from shared.events import ResponseKind
from shared.fields import Text, text_field

router = APIRouter(prefix="/v1/invitations", tags=["invitations"], responses=error_responses(401, 422))


class DeliveryOut(BaseModel):
    subscription_id: str
    message_id: str
    state: DeliveryState
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
    why: str
    track_record: dict[str, Any] | None
    created_at: datetime
    deliveries: list[DeliveryOut]

    @classmethod
    def of(cls, view: InvitationView) -> InvitationOut:
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
            why=stored_why(inv),
            track_record=inv.track_record,
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


class ResponseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response: ResponseKind


class RecordedResponse(BaseModel):
    id: str = Field(description="The id of the invitation.responded event that carries it.")
    invitation_id: str
    person_id: str
    response: ResponseKind
    responded_at: datetime


@router.post("/{invitation_id}/response", status_code=status.HTTP_201_CREATED, responses=error_responses(404))
async def respond(
    invitation_id: Text, body: ResponseIn, notifier: NotifierDep, tenant: TenantDep, db: DatabaseDep, now: NowDep
) -> RecordedResponse:
    """Store what the invitee said; it is published as `invitation.responded` (now, or on the next round)."""
    invitation = await invitations.get(db, tenant=tenant, invitation_id=invitation_id)
    if invitation is None:
        raise not_found(f"invitation {invitation_id}")
    recorded = await responses.record(db, invitation=invitation, response=body.response, now=now)
    if notifier.publisher is not None:
        notifier.publisher.wake()
    return RecordedResponse(
        id=recorded.id,
        invitation_id=invitation.id,
        person_id=invitation.person_id,
        response=body.response,
        responded_at=recorded.created_at,
    )


@router.get("")
async def list_invitations(
    tenant: TenantDep,
    db: DatabaseDep,
    thread_id: Annotated[text_field(max_length=200) | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InvitationOut]:
    views = await invitations.list_for(db, tenant=tenant, thread_id=thread_id, limit=limit)
    return [InvitationOut.of(view) for view in views]
