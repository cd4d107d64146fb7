"""`/v1/threads/{id}/invitations`: every invite decision for a thread, each with its reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from services.notifier.payload import stored_why
from services.notifier.routes import DatabaseDep, TenantDep
from services.notifier.routes.fields import InvitedScore, Parts, StoredEvidence, StoredTrackRecord, Why
from services.notifier.store import threads
from shared.errors import error_responses
from shared.fields import Text

router = APIRouter(prefix="/v1/threads", tags=["threads"], responses=error_responses(401, 422))


class ResponseOut(BaseModel):
    """One response of the invitee's."""

    response: str = Field(description="What they did: `answered`, `accepted`, `declined` or `not_my_area`.",
                          examples=["answered"])
    responded_at: datetime = Field(description="When the notifier stored it (UTC).", examples=["2025-05-02T10:05:00Z"])


class InvitedOut(BaseModel):
    """A person invited to the thread, and why."""

    invitation_id: str = Field(description="The invitation's id.", examples=["inv_5c0d2e6f7a8b4c9d0e1f2a3b4c5d6e7f"])
    person_id: str = Field(description="The invitee.", examples=["u-dan"])
    invited_at: datetime = Field(description="When they were invited (UTC).", examples=["2025-05-02T09:30:04Z"])
    round: int = Field(description="1 for the first invitations, 2 and up for escalations.", examples=[1])
    score: InvitedScore
    parts: Parts
    why: Why
    track_record: StoredTrackRecord
    evidence: StoredEvidence
    responses: list[ResponseOut] = Field(description="What they said of the invitation, oldest first.")


class SkippedOut(BaseModel):
    """A candidate passed over, and why."""

    person_id: str = Field(description="The candidate.", examples=["u-eve"])
    reason: str = Field(
        description="Why: `asker`, `participant`, `already_invited`, `not_close_enough`, `not_my_area`, "
        "`opted_out`, `snoozed`, `daily_cap` or `weekly_cap`.",
        examples=["snoozed"],
    )
    score: float = Field(description="Their score in that round's ranking.", examples=[2.2])
    round: int = Field(description="The round in which the reason was first given.", examples=[1])
    decided_at: datetime = Field(description="When (UTC).", examples=["2025-05-02T09:30:04Z"])


class EscalationOut(BaseModel):
    """Where the thread's escalation stands."""

    rounds: int = Field(description="Rounds of invitations so far.", examples=[1])
    next_escalation_at: datetime | None = Field(
        description="When the next candidates are invited if nobody invited has replied; `null` once it is over.",
        examples=["2025-05-02T13:30:04Z"],
    )
    closed_reason: str | None = Field(
        description="Why escalation is over: `accepted_answer`, `invitee_replied`, `limit_reached`, "
        "`no_candidates` or `no_one_close_enough`; `null` while it goes on.",
        examples=[None],
    )


class ThreadInvitations(BaseModel):
    """Every invite decision for a thread, each with its reason."""

    thread_id: str = Field(description="The thread.", examples=["t-17"])
    escalation: EscalationOut | None = Field(description="`null` for a thread the notifier never saw.")
    invited: list[InvitedOut] = Field(description="Who was invited, in the order they were.")
    skipped: list[SkippedOut] = Field(
        description="Who was passed over, once per person and reason, when first given; only people scored at "
        "least as high as the round's lowest invitee (or when the round could not be filled)."
    )


@router.get("/{thread_id}/invitations", summary="Explain a thread's invitations")
async def thread_invitations(
    thread_id: Annotated[Text, Path(description="The thread, as the posts' `thread_id` names it.")],
    tenant: TenantDep,
    db: DatabaseDep,
) -> ThreadInvitations:
    """Who was invited to the thread and why, who was passed over and why, and where its escalation stands.
    A thread the notifier never saw answers empty lists and `"escalation": null`."""
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
