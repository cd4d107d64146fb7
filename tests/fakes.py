"""Fakes at expertmatch's own interfaces: an in-memory ExpertIndex, a deterministic embedder, ingest's publisher."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import datetime

from services.ingest.publisher import BrokerUnavailable
from services.matcher.index.base import (
    AcceptedQuestion,
    Contribution,
    Feedback,
    FeedbackHit,
    Hit,
    IndexUnavailable,
    ThreadInfo,
    point_id,
)
from services.matcher.index.lexical import query_terms
from services.matcher.index.payload import epoch_seconds, sparse_terms
from shared.events import PostKind

_WORD = re.compile(r"[a-z0-9]+")


class FakePublisher:
    """Records what ingest would have sent to the posts topic; can play a broker that is down."""

    def __init__(self) -> None:
        self.events: list = []
        self.down = False

    async def publish(self, events: Sequence) -> None:
        if self.down:
            raise BrokerUnavailable("the broker did not acknowledge: KafkaConnectionError")
        self.events.extend(events)


class FakeEmbedder:
    """Bag of hashed words, unit length: texts sharing words are close, the same text is identical."""

    name = "fake-bag-of-words"

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [self.vector(text) for text in texts]

    async def lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(text)) for text in texts]

    def vector(self, text: str) -> list[float]:
        vector = [0.0] * self.dimension
        for word in _WORD.findall(text.lower()):
            slot = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            vector[slot % self.dimension] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]


class InMemoryIndex:
    """The ExpertIndex contract over a dict, exact cosine search; `available=False` simulates an outage."""

    def __init__(self) -> None:
        self.points: dict[str, Contribution] = {}
        self.feedback: dict[tuple[str, str, str], Feedback] = {}  # by tenant, question, person
        self.available = True
        self.closed = False

    def _check(self) -> None:
        if not self.available:
            raise IndexUnavailable("in-memory index switched off")

    async def upsert(self, contributions: Sequence[Contribution]) -> None:
        self._check()
        for c in contributions:
            self.points[point_id(c.tenant, c.post_id)] = c

    async def delete_post(self, tenant: str, post_id: str) -> None:
        self._check()
        self.points.pop(point_id(tenant, post_id), None)
        for key in [k for k in self.feedback if k[:2] == (tenant, post_id)]:
            del self.feedback[key]

    async def erase_person(self, tenant: str, person_id: str) -> int:
        self._check()
        gone = [k for k, c in self.points.items() if c.tenant == tenant and c.author_id == person_id]
        for key in gone:
            del self.points[key]
        responses = [k for k in self.feedback if k[0] == tenant and k[2] == person_id]
        for key in responses:
            del self.feedback[key]
        return len(gone) + len(responses)

    async def vector(self, tenant: str, post_id: str) -> list[float] | None:
        self._check()
        point = self.points.get(point_id(tenant, post_id))
        return list(point.vector) if point else None

    async def record_feedback(self, feedback: Feedback) -> None:
        self._check()
        answered = feedback.response == "answered"
        self.feedback[(feedback.tenant, feedback.question_post_id, feedback.person_id, answered)] = feedback

    async def feedback_near(
        self, tenant: str, vector: Sequence[float], *, limit: int, before: datetime | None = None
    ) -> list[FeedbackHit]:
        self._check()
        found = [
            (_cosine(vector, f.vector), f)
            for f in self.feedback.values()
            if f.tenant == tenant and (before is None or int(epoch_seconds(f.at)) < epoch_seconds(before))
        ]
        found.sort(key=lambda pair: (-pair[0], pair[1].question_post_id, pair[1].person_id))
        return [
            FeedbackHit(
                person_id=f.person_id,
                response=f.response,
                question_post_id=f.question_post_id,
                thread_id=f.thread_id,
                at=f.at,
                similarity=similarity,
            )
            for similarity, f in found[:limit]
        ]

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
        self._check()
        found = [
            (_cosine(vector, c.vector), c)
            for c in self.points.values()
            if c.tenant == tenant
            and (audiences is None or set(c.audience) & set(audiences))
            and c.author_id not in exclude_authors
            and c.thread_id not in exclude_threads
            and _created_in(c, None, before)
        ]
        found.sort(key=lambda pair: (-pair[0], pair[1].post_id))
        return [_hit(c, similarity) for similarity, c in found[:limit]]

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
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        everyone = await self.search(
            tenant,
            vector,
            limit=len(self.points) or 1,
            audiences=audiences,
            exclude_threads=exclude_threads,
            before=before,
        )
        found: dict[str, list[Hit]] = {}
        for hit in everyone:
            if kinds is not None and hit.kind not in kinds:
                continue
            if hit.author_id in authors and len(found.setdefault(hit.author_id, [])) < limit:
                found[hit.author_id].append(hit)
        return found

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
        """BM25 as the engine scores it: IDF over the tenant's contributions before `before`."""
        self._check()
        query = query_terms(text)
        corpus = [
            (c, terms)
            for c in self.points.values()
            if c.tenant == tenant and _created_in(c, None, before) and (terms := sparse_terms(c))
        ]
        frequency: dict[int, int] = {}
        for _, terms in corpus:
            for term in terms.keys() & query.keys():
                frequency[term] = frequency.get(term, 0) + 1
        idf = {t: math.log((len(corpus) - n + 0.5) / (n + 0.5) + 1) for t, n in frequency.items()}
        found = [
            (sum(idf[t] * terms[t] * query[t] for t in terms.keys() & query.keys()), c)
            for c, terms in corpus
            if terms.keys() & query.keys()
            and (audiences is None or set(c.audience) & set(audiences))
            and c.author_id not in exclude_authors
            and c.thread_id not in exclude_threads
        ]
        found.sort(key=lambda pair: (-pair[0], pair[1].post_id))
        return [_hit(c, score) for score, c in found[:limit]]

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
        self._check()
        counts: dict[str, int] = {}
        for c in self.points.values():
            if (
                c.tenant == tenant
                and (kinds is None or c.kind in kinds)
                and (tags_any is None or set(c.tags) & set(tags_any))
                and (accepted is None or c.accepted == accepted)
                and (authors is None or c.author_id in authors)
                and _created_in(c, after, before)
            ):
                counts[c.author_id] = counts.get(c.author_id, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit])

    async def accepted_questions(self, tenant: str, *, limit: int) -> list[AcceptedQuestion]:
        self._check()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        answers = [c for c in self.points.values() if c.tenant == tenant and c.kind is PostKind.ANSWER and c.accepted]
        answers.sort(key=lambda c: int(epoch_seconds(c.created_at)), reverse=True)
        answerers: dict[str, str] = {}
        for c in answers[:limit]:
            answerers.setdefault(c.thread_id, c.author_id)
        found = [
            AcceptedQuestion(
                question=_hit(c, 0.0),
                vector=list(c.vector),
                audience=tuple(c.audience),
                answerer=answerers[c.thread_id],
            )
            for c in self.points.values()
            if c.tenant == tenant and c.kind is PostKind.QUESTION and c.thread_id in answerers
        ]
        return sorted(found, key=lambda a: (a.question.created_at, a.question.post_id))

    async def recent_authors(
        self,
        tenant: str,
        *,
        kinds: Sequence[PostKind] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int,
    ) -> list[str]:
        self._check()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        found = [
            c
            for c in self.points.values()
            if c.tenant == tenant and (kinds is None or c.kind in kinds) and _created_in(c, after, before)
        ]
        found.sort(key=lambda c: int(epoch_seconds(c.created_at)), reverse=True)
        return [c.author_id for c in found[:limit]]

    async def thread_answers(
        self,
        tenant: str,
        thread_ids: Sequence[str],
        *,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        self._check()
        found = [
            c
            for c in self.points.values()
            if c.tenant == tenant
            and c.kind is PostKind.ANSWER
            and c.thread_id in thread_ids
            and (audiences is None or set(c.audience) & set(audiences))
            and c.author_id not in exclude_authors
            and _created_in(c, None, before)
        ]
        return [_hit(c, 0.0) for c in sorted(found, key=lambda c: (c.thread_id, c.post_id))]

    async def thread(self, tenant: str, thread_id: str) -> ThreadInfo:
        self._check()
        posts = [c for c in self.points.values() if c.tenant == tenant and c.thread_id == thread_id]
        root = next((c for c in posts if c.kind is PostKind.QUESTION), None)
        return ThreadInfo(
            thread_id=thread_id,
            title=root.title if root else None,
            participants=frozenset(c.author_id for c in posts),
        )

    async def count(self, tenant: str, post_ids: Sequence[str] | None = None) -> int:
        self._check()
        wanted = None if post_ids is None else set(post_ids)
        return sum(1 for c in self.points.values() if c.tenant == tenant and (wanted is None or c.post_id in wanted))

    async def ready(self) -> bool:
        return self.available

    async def close(self) -> None:
        self.closed = True


def _created_in(c: Contribution, after: datetime | None, before: datetime | None) -> bool:
    # The index keeps creation times to the second, as `created_ts`.
    created = int(epoch_seconds(c.created_at))
    return (after is None or created >= epoch_seconds(after)) and (before is None or created < epoch_seconds(before))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _hit(c: Contribution, similarity: float) -> Hit:
    return Hit(
        post_id=c.post_id,
        thread_id=c.thread_id,
        author_id=c.author_id,
        kind=c.kind,
        title=c.title,
        text=c.text,
        created_at=c.created_at,
        similarity=similarity,
        tags=c.tags,
        accepted=c.accepted,
        score=c.score,
        url=c.url,
    )
