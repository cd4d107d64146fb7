"""`/v1/invitations`: who was invited to which thread, how far each webhook got, and the invitees' responses."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from services.notifier.payload import stored_why
from services.notifier.routes import DatabaseDep, NotifierDep, NowDep, TenantDep, not_found
from services.notifier.routes.fields import (
    Attempts,
    DeliveredAt,
    InvitedScore,
    LastStatus,
    MessageId,
    NextAttemptAt,
    Parts,
    State,
    StoredEvidence,
    StoredTrackRecord,
    SubscriptionRef,
    Why,
)
from services.notifier.store import invitations, responses
from services.notifier.store.invitations import InvitationView
from shared.errors import error_responses
from shared.events import ResponseKind
from shared.fields import Text, text_field

router = APIRouter(prefix="/v1/invitations", tags=["invitations"], responses=error_responses(401, 422))


class DeliveryOut(BaseModel):
    """How far the invitation's webhook got at one subscription."""

    subscription_id: SubscriptionRef
    message_id: MessageId
    state: State
    attempts: Attempts
    last_status: LastStatus
    next_attempt_at: NextAttemptAt
    delivered_at: DeliveredAt


class InvitationOut(BaseModel):
    """A colleague invited to a thread, with why and how each webhook went."""

    id: str = Field(description="The invitation's id: one per tenant, thread and person.",
                    examples=["inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f"])
    thread_id: str = Field(description="The question's thread.", examples=["t-17"])
    person_id: str = Field(description="The invitee, as the posts' `author_id` names them.", examples=["u-dan"])
    question_post_id: str = Field(description="The question's post id.", examples=["p-1001"])
    question_title: str | None = Field(description="The question's title as plain text.",
                                       examples=["How do we rotate the Vault token used by CI?"])
    question_url: str | None = Field(description="The link to the question that ingest was given, if any.",
                                     examples=["https://intranet.example/t/17"])
    score: InvitedScore
    evidence: StoredEvidence
    parts: Parts
    why: Why
    track_record: StoredTrackRecord
    created_at: datetime = Field(description="When the invitation was made (UTC).", examples=["2025-05-02T09:30:04Z"])
    deliveries: list[DeliveryOut] = Field(description="Its webhook at each subscription, oldest first.")

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
    """What the invitee did with the invitation."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"response": "not_my_area"}]})

    response: ResponseKind = Field(
        description="`answered`: they answered (lifts them on close questions, ends the thread's escalation); "
        "`accepted`: they took the invitation (lifts them a little); `declined`: not now (no change); "
        "`not_my_area`: the wrong person for this topic (lowers them on close questions only).",
        examples=["answered"],
    )


class RecordedResponse(BaseModel):
    """The response as stored; it is published as `invitation.responded`."""

    id: str = Field(description="The id of the invitation.responded event that carries it.",
                    examples=["b7e64cf8-2f0e-4d2b-9c1a-5e3f7a9d0c21"])
    invitation_id: str = Field(description="The invitation responded to.",
                               examples=["inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f"])
    person_id: str = Field(description="The invitee.", examples=["u-dan"])
    response: ResponseKind = Field(description="What they did, as sent.", examples=["not_my_area"])
    responded_at: datetime = Field(description="When the notifier stored it (UTC).",
                                   examples=["2025-05-02T10:05:00Z"])


@router.post("/{invitation_id}/response", status_code=status.HTTP_201_CREATED, responses=error_responses(404),
             summary="Report what the invitee did")
async def respond(
    invitation_id: Annotated[Text, Path(description="The invitation's id, as the webhook gave it.")],
    body: ResponseIn,
    notifier: NotifierDep,
    tenant: TenantDep,
    db: DatabaseDep,
    now: NowDep,
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


@router.get("", summary="List the tenant's invitations")
async def list_invitations(
    tenant: TenantDep,
    db: DatabaseDep,
    thread_id: Annotated[text_field(max_length=200) | None, Query(description="Only this thread's.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many, 1-500.")] = 100,
) -> list[InvitationOut]:
    """The tenant's invitations, newest first, each with how far its webhooks got."""
    views = await invitations.list_for(db, tenant=tenant, thread_id=thread_id, limit=limit)
    return [InvitationOut.of(view) for view in views]
