"""How a Contribution is stored as a point (payload, checked vectors) and read back as a Hit.

Both adapters use this, so Edge and the server keep the same payload and the same answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from services.matcher.index.base import AcceptedQuestion, Contribution, Feedback, FeedbackHit, Hit, point_id
from services.matcher.index.lexical import document_terms
from shared.events import PostKind, ResponseKind

DENSE = "dense"
SPARSE = "sparse"
DIMENSIONS = 384
# Keeps payloads small; an evidence snippet never needs more than the start of a post.
TEXT_LIMIT = 2_000
# Keyword fields the index filters on; `tenant` is the tenant (partition) index.
KEYWORD_FIELDS = ("author_id", "thread_id", "post_id", "audience", "kind", "tags")
# Qdrant Edge 0.9 turns MatchValue(True) into the integer 1, which never matches a boolean, so
# Edge filters on this 0/1 mirror of `accepted`; the server filters on `accepted` itself.
ACCEPTED_FLAG = "accepted_flag"
_KINDS = {kind.value: kind for kind in PostKind}
# What `to_hit` reads: a search returns only these (a point's whole payload took 6.3 us a point
# to reach Python from Edge, these 4.6 us, and a question's rank step reads ~1,000 hits).
HIT_FIELDS = (
    "post_id", "thread_id", "author_id", "kind", "title", "text", "created_at", "tags", "accepted", "score", "url",
)
# What `thread()` reads of each point in the thread.
THREAD_FIELDS = ["author_id", "kind", "title"]


def checked_vector(vector: Sequence[float], dimensions: int = DIMENSIONS) -> list[float]:
    """The vector as a list of floats, or a ValueError saying what is wrong with it."""
    values = [float(x) for x in vector]
    if len(values) != dimensions:
        raise ValueError(f"vector has {len(values)} dimensions, the index expects {dimensions}")
    if not all(math.isfinite(x) for x in values):
        raise ValueError("vector has a NaN or infinite component")
    if not any(values):
        # Cosine similarity is undefined for a zero vector.
        raise ValueError("vector is all zeros")
    return values


def checked_sparse(sparse: Mapping[int, float]) -> tuple[list[int], list[float]]:
    """Sorted indices and their values of a sparse vector, or a ValueError."""
    if any(index < 0 for index in sparse):
        raise ValueError("sparse vector has a negative index")
    indices = sorted(sparse)
    return indices, [float(sparse[i]) for i in indices]


def sparse_terms(contribution: Contribution) -> dict[int, float]:
    """The contribution's own sparse vector, else the BM25 vector of its title and text."""
    if contribution.sparse is not None:
        return dict(contribution.sparse)
    return document_terms(contribution.title, contribution.text)


def epoch_seconds(moment: datetime) -> float:
    """An instant as Unix seconds, comparable with the stored `created_ts` (naive means UTC)."""
    return _aware(moment).timestamp()


def _aware(moment: datetime) -> datetime:
    # A naive time is taken as UTC, so stored times always compare and sort.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def to_payload(contribution: Contribution) -> dict[str, Any]:
    """The payload stored with a contribution's point."""
    created_at = _aware(contribution.created_at)
    return {
        "tenant": contribution.tenant,
        "post_id": contribution.post_id,
        "thread_id": contribution.thread_id,
        "author_id": contribution.author_id,
        "kind": PostKind(contribution.kind).value,
        "title": contribution.title,
        "text": contribution.text[:TEXT_LIMIT],
        "tags": list(contribution.tags),
        "audience": list(contribution.audience),
        "created_at": created_at.isoformat(),
        "created_ts": int(created_at.timestamp()),
        "accepted": contribution.accepted,
        ACCEPTED_FLAG: int(contribution.accepted),
        "score": contribution.score,
        "url": contribution.url,
    }


def to_hit(payload: Mapping[str, Any], similarity: float) -> Hit:
    """A search result read back from a point's payload."""
    # A question's rank step reads ~1,000 hits back (bench-scale 100k): the kind by a dict lookup,
    # not the enum's call, and the instant parsed once.
    kind = payload["kind"]
    return Hit(
        post_id=payload["post_id"],
        thread_id=payload["thread_id"],
        author_id=payload["author_id"],
        kind=_KINDS.get(kind) or PostKind(kind),
        title=payload.get("title"),
        text=payload.get("text", ""),
        created_at=_aware(datetime.fromisoformat(payload["created_at"])),
        similarity=float(similarity),
        tags=tuple(payload.get("tags") or ()),
        accepted=bool(payload.get("accepted", False)),
        score=int(payload.get("score", 0)),
        url=payload.get("url"),  # absent from points written before links were kept
    )


def accepted_answerers(payloads: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Thread -> the author of its accepted answer, from answers newest first (the newest wins)."""
    found: dict[str, str] = {}
    for payload in payloads:
        found.setdefault(payload["thread_id"], payload["author_id"])
    return found


def accepted_question(
    payload: Mapping[str, Any], vector: list[float], answerers: Mapping[str, str]
) -> AcceptedQuestion:
    return AcceptedQuestion(
        question=to_hit(payload, 0.0),
        vector=vector,
        audience=tuple(payload.get("audience") or ()),
        answerer=answerers[payload["thread_id"]],
    )


def oldest_first(found: AcceptedQuestion) -> tuple[datetime, str]:
    return found.question.created_at, found.question.post_id


def thread_title(payloads: Sequence[Mapping[str, Any]]) -> str | None:
    """The thread's title: the question's, else any title present."""
    titles = [(p.get("kind") == PostKind.QUESTION.value, p.get("title")) for p in payloads]
    ranked = sorted((t for t in titles if t[1]), key=lambda t: not t[0])
    return ranked[0][1] if ranked else None


def feedback_partition(tenant: str) -> str:
    """Where a tenant's responses to invitations are kept: a partition of their own.

    A tenant's name never contains a comma (EXPERTMATCH_API_KEYS is a comma-separated list), so
    no tenant's posts share this partition and no search over posts ever meets a response.
    """
    return f"{tenant},feedback"


def feedback_point_id(feedback: Feedback) -> str:
    """One point per (question, person) for what they said, a later response replacing the earlier
    one, and one more for having answered (a fact, not an opinion): nothing said afterwards undoes
    an answer given."""
    key = f"{feedback.question_post_id}/{feedback.person_id}"
    if feedback.response is ResponseKind.ANSWERED:
        key += f"/{ResponseKind.ANSWERED.value}"
    return point_id(feedback_partition(feedback.tenant), key)


def feedback_payload(feedback: Feedback) -> dict[str, Any]:
    """The payload of a response's point: keyed like a post's, so the same filters erase it."""
    at = _aware(feedback.at)
    return {
        "tenant": feedback_partition(feedback.tenant),
        "post_id": feedback.question_post_id,
        "thread_id": feedback.thread_id,
        "author_id": feedback.person_id,
        "response": feedback.response.value,
        "created_at": at.isoformat(),
        "created_ts": int(at.timestamp()),
    }


def to_feedback_hit(payload: Mapping[str, Any], similarity: float) -> FeedbackHit:
    return FeedbackHit(
        person_id=payload["author_id"],
        response=ResponseKind(payload["response"]),
        question_post_id=payload["post_id"],
        thread_id=payload["thread_id"],
        at=_aware(datetime.fromisoformat(payload["created_at"])),
        similarity=float(similarity),
    )
