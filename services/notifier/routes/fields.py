"""The fields that several of the notifier's answers share, each described once for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from services.notifier.models import DeliveryState

# What an invitation keeps of the matcher's `Evidence` and `TrackRecord` (shared/events.py), as JSON.
EVIDENCE_EXAMPLE = [{
    "post_id": "p-88", "thread_id": "t-9", "kind": "answer", "title": "Vault token renewal in pipelines",
    "snippet": "We renew it from the pipeline with a periodic token.", "url": None, "similarity": 0.71,
    "accepted": True, "score": 4, "created_at": "2025-03-11T14:02:00Z",
}]
TRACK_RECORD_EXAMPLE = {
    "answers": 9, "accepted": 3, "answers_last_30_days": 4, "answers_last_90_days": 7,
    "tags": [{"tag": "vault", "answers": 3, "accepted": 2}], "answered_nearby": 1, "not_my_area_nearby": 0,
}

# An invitation's "why you".
InvitedScore = Annotated[float, Field(
    description="Their score when ranked: their lead over the weakest candidate found.", examples=[2.31]
)]
Parts = Annotated[dict[str, float], Field(
    description="What the score was made of, by part; they sum to the score.",
    examples=[{"similarity": 1.42, "lexical": 0.31, "activity": 0.58}],
)]
Why = Annotated[str, Field(
    description="The webhook's one sentence of facts about the invitee.",
    examples=["You answered “Vault token renewal in pipelines” (accepted)."],
)]
StoredEvidence = Annotated[list[dict[str, Any]], Field(
    description="Their posts that matched, best first, as the matcher found them (`Evidence` of "
    "`POST /v1/experts/search`: `post_id`, `thread_id`, `kind`, `title`, `snippet`, `url`, `similarity`, "
    "`accepted`, `score`, `created_at`).",
    examples=[EVIDENCE_EXAMPLE],
)]
StoredTrackRecord = Annotated[dict[str, Any] | None, Field(
    description="The counts the `why` states (`TrackRecord` of the matcher's search); `null` on invitations "
    "made before the notifier kept them.",
    examples=[TRACK_RECORD_EXAMPLE],
)]

# How far a webhook delivery got.
SubscriptionRef = Annotated[str, Field(
    description="The subscription it goes to.", examples=["sub_3f9c0d6e1b2a4c5d8e7f60718293a4b5"]
)]
MessageId = Annotated[str, Field(
    description="The webhook's `webhook-id` header, the same on every attempt and replay.",
    examples=["msg_9a8b7c6d5e4f40312a1b0c9d8e7f6a5b"],
)]
State = Annotated[DeliveryState, Field(
    description="`pending` while it is retried, then `delivered` or `failed` for good.", examples=["delivered"]
)]
Attempts = Annotated[int, Field(description="Attempts made since it was queued, or last replayed.", examples=[1])]
LastStatus = Annotated[int | None, Field(
    description="The HTTP status of the last attempt; `null` when no answer came or none was made.", examples=[200]
)]
NextAttemptAt = Annotated[datetime | None, Field(
    description="When the next attempt is due; `null` once delivered or failed.", examples=[None]
)]
DeliveredAt = Annotated[datetime | None, Field(
    description="When a receiver acknowledged it with a 2xx; `null` until then.", examples=["2025-05-02T09:30:05Z"]
)]
