"""The vector index the matcher needs, behind one Protocol: one adapter over two engines.

`QdrantIndex` (index/qdrant.py) writes every method once over an Engine (index/engine.py):
- `EdgeIndex` (index/edge.py): Qdrant Edge in-process, on disk; the embedded default.
- `QdrantServerIndex` (index/server.py): a Qdrant server through `AsyncQdrantClient`.

One point per contribution (a post), id = uuid5(tenant/post id), filtered by tenant on every call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.events import PostKind, ResponseKind

# The collection a Qdrant server keeps the contributions in, unless configured otherwise.
DEFAULT_COLLECTION = "contributions"

_NAMESPACE = uuid.UUID("6f1c9b7e-2d7a-4f0e-9a43-0c1d2e3f4a5b")


def point_id(tenant: str, post_id: str) -> str:
    """Stable point id for a post: re-indexing the same post overwrites it (idempotent)."""
    return str(uuid.uuid5(_NAMESPACE, f"{tenant}/{post_id}"))


@dataclass(frozen=True, slots=True)
class Contribution:
    """One post as indexed: its payload plus its vectors."""

    tenant: str
    post_id: str
    thread_id: str
    author_id: str
    kind: PostKind
    title: str | None
    text: str  # the plain-text body, kept for evidence snippets
    created_at: datetime
    vector: Sequence[float]
    tags: tuple[str, ...] = ()
    audience: tuple[str, ...] = ("public",)
    accepted: bool = False
    score: int = 0
    # Sparse lexical vector (token id -> weight); None: the index computes it from title and text.
    sparse: dict[int, float] | None = None
    url: str | None = None  # the intranet's link to the post, when ingest was given one


@dataclass(frozen=True, slots=True)
class Hit:
    """A contribution found by a search, with its similarity to the query (cosine, higher is closer)."""

    post_id: str
    thread_id: str
    author_id: str
    kind: PostKind
    title: str | None
    text: str
    created_at: datetime
    similarity: float
    tags: tuple[str, ...] = ()
    accepted: bool = False
    score: int = 0
    url: str | None = None

    def at(self, similarity: float) -> Hit:
        """The same hit at another similarity: `dataclasses.replace` at a third of its cost (4.2 us),
        for the hundreds of hits a question's searches read back."""
        return Hit(
            post_id=self.post_id, thread_id=self.thread_id, author_id=self.author_id, kind=self.kind,
            title=self.title, text=self.text, created_at=self.created_at, similarity=similarity,
            tags=self.tags, accepted=self.accepted, score=self.score, url=self.url,
        )


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    """What the index knows of a thread: its title and who has posted in it."""

    thread_id: str
    title: str | None
    participants: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Feedback:
    """What an invited person said about a question, kept beside the question's vector.

    One per (question, person): a later response replaces the earlier one, except `answered`,
    which stays beside whatever the person says later.
    """

    tenant: str
    question_post_id: str
    thread_id: str
    person_id: str
    response: ResponseKind
    at: datetime
    vector: Sequence[float]  # the question's own vector


@dataclass(frozen=True, slots=True)
class FeedbackHit:
    """A response given near a question, with the similarity of the two questions."""

    person_id: str
    response: ResponseKind
    question_post_id: str
    thread_id: str
    at: datetime
    similarity: float


@dataclass(frozen=True, slots=True)
class AcceptedQuestion:
    """A question with an accepted answer, as the index holds it: what learning to rank trains on."""

    question: Hit  # similarity 0
    vector: list[float]
    audience: tuple[str, ...]  # who may read the question
    answerer: str  # the author of its accepted answer


class IndexUnavailable(Exception):
    """The index did not answer: a transient failure, the caller retries."""


class ExpertIndex(Protocol):
    async def upsert(self, contributions: Sequence[Contribution]) -> None: ...

    async def delete_post(self, tenant: str, post_id: str) -> None:
        """Remove a post's point, and the responses given to invitations to it (if a question)."""
        ...

    async def erase_person(self, tenant: str, person_id: str) -> int:
        """Remove every contribution and every response of a person; returns how many points went."""
        ...

    async def vector(self, tenant: str, post_id: str) -> list[float] | None:
        """The dense vector a post was indexed with; None if it is not (or no longer) there."""
        ...

    async def record_feedback(self, feedback: Feedback) -> None:
        """Keep a response to an invitation, replacing that person's earlier one on that question
        (an `answered` is kept apart: a later response never replaces it)."""
        ...

    async def feedback_near(
        self, tenant: str, vector: Sequence[float], *, limit: int, before: datetime | None = None
    ) -> list[FeedbackHit]:
        """Responses given on the questions closest to `vector` (given strictly before `before`), closest first."""
        ...

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        *,
        limit: int,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        exclude_threads: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        """Nearest contributions of one tenant, closest first.

        `audiences`: only contributions visible to one of these (None: no audience filter).
        `before`: only contributions created strictly before that instant (to the second).
        """
        ...

    async def nearest_by_author(
        self,
        tenant: str,
        vector: Sequence[float],
        authors: Sequence[str],
        *,
        limit: int,
        audiences: Sequence[str] | None = None,
        exclude_threads: Sequence[str] = (),
        before: datetime | None = None,
        kinds: Sequence[PostKind] | None = None,
    ) -> dict[str, list[Hit]]:
        """Each author's `limit` contributions (of `kinds`) nearest to `vector`, closest first.

        An author with none is absent. Same filters as `search`: the evidence of a person found by
        other means than their posts' closeness.
        """
        ...

    async def search_lexical(
        self,
        tenant: str,
        text: str,
        *,
        limit: int,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        exclude_threads: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        """Contributions of one tenant by BM25 score of their title and text, best first.

        `Hit.similarity` is the lexical score (IDF-weighted, not bounded to 1); same filters as `search`.
        """
        ...

    async def author_counts(
        self,
        tenant: str,
        *,
        kinds: Sequence[PostKind] | None = None,
        tags_any: Sequence[str] | None = None,
        accepted: bool | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        authors: Sequence[str] | None = None,
        limit: int = 10_000,
    ) -> dict[str, int]:
        """How many matching contributions each author has (only authors with at least one).

        Matching: kind in `kinds`, at least one tag in `tags_any`, the accepted flag, created in
        [`after`, `before`) to the second, author in `authors`; None means no condition.
        """
        ...

    async def recent_authors(
        self,
        tenant: str,
        *,
        kinds: Sequence[PostKind] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int,
    ) -> list[str]:
        """The authors of the tenant's latest `limit` contributions of `kinds`, newest first.

        Only contributions created in [`after`, `before`) count.

        One entry per contribution, so an author appears as often as they posted among them.
        """
        ...

    async def accepted_questions(self, tenant: str, *, limit: int) -> list[AcceptedQuestion]:
        """The questions of the tenant's latest `limit` accepted answers, with their vectors, oldest first.

        A question whose post is not indexed (deleted, or its asker erased) is left out.
        """
        ...

    async def thread_answers(
        self,
        tenant: str,
        thread_ids: Sequence[str],
        *,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        """The answers in these threads, by thread then post id; `Hit.similarity` is 0.

        Same filters as `search`: it finds who answered the threads a search found.
        """
        ...

    async def thread(self, tenant: str, thread_id: str) -> ThreadInfo: ...

    async def count(self, tenant: str, post_ids: Sequence[str] | None = None) -> int:
        """How many contributions a tenant has indexed; of `post_ids` only, when given."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
