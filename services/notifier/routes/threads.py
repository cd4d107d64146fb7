"""`/v1/threads/{id}/invitations`: every invite decision for a thread, each with its reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from services.notifier.payload import stored_why
from services.notifier.routes import DatabaseDep, TenantDep
from services.notifier.store import threads
from shared.errors import error_responses
from shared.fields import Text

router = APIRouter(prefix="/v1/threads", tags=["threads"], responses=error_responses(401, 422))


class ResponseOut(BaseModel):
    response: str
    responded_at: datetime


class InvitedOut(BaseModel):
    invitation_id: str
    person_id: str
    invited_at: datetime
    round: int
    score: float
    parts: dict[str, float]
    why: str
    track_record: dict[str, Any] | None
    evidence: list[dict[str, Any]]
    responses: list[ResponseOut]


class SkippedOut(BaseModel):
    person_id: str
    reason: str
    score: float
    round: int
    decided_at: datetime


class EscalationOut(BaseModel):
    rounds: int
    next_escalation_at: datetime | None
    closed_reason: str | None


class ThreadInvitations(BaseModel):
    thread_id: str
    escalation: EscalationOut | None
    invited: list[InvitedOut]
    skipped: list[SkippedOut]


@router.get("/{thread_id}/invitations")
async def thread_invitations(thread_id: Text, tenant: TenantDep, db: DatabaseDep) -> ThreadInvitations:
    found = await threads.decisions(db, tenant=tenant, thread_id=thread_id)
    by_invitation: dict[str, list[ResponseOut]] = {}
    for r in found.responses:
        by_invitation.setdefault(r.invitation_id, []).append(
            ResponseOut(response=r.response, responded_at=r.created_at)
        )
    state = found.state
    return ThreadInvitations(
        thread_id=thread_id,
        escalation=None if state is None else EscalationOut(
            rounds=state.rounds, next_escalation_at=state.escalate_at, closed_reason=state.closed_reason
        ),
        invited=[
            InvitedOut(
                invitation_id=i.id,
                person_id=i.person_id,
                invited_at=i.created_at,
                round=i.round,
                score=i.score,
                parts=i.parts,
                why=stored_why(i),
                track_record=i.track_record,
                evidence=i.evidence,
                responses=by_invitation.get(i.id, []),
            )
            for i in found.invitations
        ],
        skipped=[
            SkippedOut(person_id=s.person_id, reason=s.reason, score=s.score, round=s.round, decided_at=s.decided_at)
            for s in found.skips
        ],
    )
