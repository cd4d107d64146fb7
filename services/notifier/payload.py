"""The `invitation.created` webhook body, with its one-sentence "why you"."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from shared.events import Candidate, Evidence, PostKind, Question

INVITATION_CREATED = "invitation.created"

_VERBS = {PostKind.ANSWER: "answered", PostKind.QUESTION: "asked", PostKind.COMMENT: "commented on"}
# The parts of a score that say the person's posts are about this question (services/matcher/ranking.py).
_TOPICAL = ("similarity", "lexical")
# What the other parts say of a person, when one of them, not their posts, put them here.
_REASONS = {
    "activity": "You have been answering a lot lately",
    "answers": "You have answered many questions",
    "accepted": "Your answers are often accepted",
    "tags": "You often answer questions tagged like this one",
    "feedback": "You took up invitations to questions like this one",
}


def _shorten(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "…"


def _topic(evidence: Evidence) -> str:
    return f"'{evidence.title or _shorten(evidence.snippet)}'"


def why_you(evidence: Sequence[Evidence], parts: Mapping[str, float] | None = None) -> str:
    """E.g. "You answered 'How do we rotate the Vault token?' (accepted) and 2 similar posts.".

    The sentence leads with the biggest part of the score. When that is not how well the person's
    posts match the question (`similarity` or `lexical`) but, say, their activity, it says so, and
    names their closest post without calling the rest similar: a person invited mostly for being
    active is told so, not that their posts match.
    """
    if not evidence:
        return "Your past posts are close to this question."
    best = max(evidence, key=lambda e: e.similarity)
    post = f"{_VERBS[best.kind]} {_topic(best)}" + (" (accepted)" if best.accepted else "")
    leading = _leading_reason(parts or {})
    if leading is not None:
        return f"{_REASONS[leading]}; closest to this question, you {post}."
    others = len(evidence) - 1
    if others:
        post += f" and {others} similar post{'s' if others > 1 else ''}"
    return f"You {post}."


def _leading_reason(parts: Mapping[str, float]) -> str | None:
    """The biggest part of the score, if it is positive and not one of the posts' match."""
    topical = max([parts.get(name, 0.0) for name in _TOPICAL] + [0.0])
    others = {name: value for name, value in parts.items() if name in _REASONS and value > topical}
    return max(others, key=others.__getitem__) if others else None


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
            "why": why_you(candidate.evidence, candidate.parts),
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
