"""The `invitation.created` webhook body, with its one-sentence "why you"."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from shared.events import Candidate, Evidence, PostKind, Question

INVITATION_CREATED = "invitation.created"

_VERBS = {PostKind.ANSWER: "answered", PostKind.QUESTION: "asked", PostKind.COMMENT: "commented on"}


def _shorten(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "…"


def _topic(evidence: Evidence) -> str:
    return f"'{evidence.title or _shorten(evidence.snippet)}'"


def why_you(evidence: Sequence[Evidence]) -> str:
    """E.g. "You answered 'How do we rotate the Vault token?' (accepted) and 2 similar posts."."""
    if not evidence:
        return "Your past posts are close to this question."
    best = max(evidence, key=lambda e: e.similarity)
    sentence = f"You {_VERBS[best.kind]} {_topic(best)}"
    if best.accepted:
        sentence += " (accepted)"
    others = len(evidence) - 1
    if others:
        sentence += f" and {others} similar post{'s' if others > 1 else ''}"
    return sentence + "."


def invitation_payload(
    *, invitation_id: str, question: Question, candidate: Candidate, created_at: datetime
) -> bytes:
    """The exact bytes every attempt of this invitation's webhook sends (and signs)."""
    body = {
        "type": INVITATION_CREATED,
        "timestamp": created_at.isoformat(),
        "data": {
            "invitation_id": invitation_id,
            "thread_id": question.thread_id,
            "question": {
                "post_id": question.post_id,
                "title": question.title,
                "url": question.url,
                "excerpt": question.excerpt,
            },
            "person_id": candidate.person_id,
            "score": candidate.score,
            "why": why_you(candidate.evidence),
            "evidence": [
                {
                    "post_id": e.post_id,
                    "title": e.title,
                    "snippet": e.snippet,
                    "url": e.url,
                    "similarity": e.similarity,
                    "kind": e.kind.value,
                    "accepted": e.accepted,
                }
                for e in candidate.evidence
            ],
            "parts": candidate.parts,
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
