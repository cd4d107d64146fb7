"""QdrantIndex: every ExpertIndex method, written once over an Engine (Qdrant Edge or a server).

One point per contribution (a post), id = uuid5(tenant/post id), filtered by tenant on every call;
a tenant's responses to invitations live in a partition of their own (payload.feedback_partition).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from services.matcher.index.base import (
    AcceptedQuestion,
    Contribution,
    Feedback,
    FeedbackHit,
    Hit,
    ThreadInfo,
    point_id,
)
from services.matcher.index.engine import Engine, Nearest, Point, Record, Sparse
from services.matcher.index.hit_cache import HitCache
from services.matcher.index.lexical import query_terms
from services.matcher.index.payload import (
    DENSE,
    DIMENSIONS,
    HIT_FIELDS,
    SPARSE,
    THREAD_FIELDS,
    accepted_answerers,
    accepted_question,
    checked_sparse,
    checked_vector,
    feedback_partition,
    feedback_payload,
    feedback_point_id,
    oldest_first,
    sparse_terms,
    thread_title,
    to_feedback_hit,
    to_hit,
    to_payload,
)
from services.matcher.index.where import Scope, any_of, count_where, kinds_of, matching
from shared.events import PostKind


def _at_least_one(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return limit


class QdrantIndex:
    """The ExpertIndex over a Qdrant engine; `EdgeIndex.open` and `QdrantServerIndex.open` build one."""

    def __init__(self, engine: Engine, *, dimensions: int = DIMENSIONS, hit_cache: HitCache | None = None):
        """`hit_cache` only where nothing but this index writes the engine's points."""
        self.engine = engine
        self.dimensions = dimensions
        self._cache = hit_cache
        # With a cache, searches return ids and scores, and `_hits` reads the payloads it lacks.
        self._hit_fields: Sequence[str] | bool = False if hit_cache is not None else HIT_FIELDS

    async def _hits(self, records: Sequence[Record]) -> list[Hit]:
        """The hits of these records, in their order, each with its record's score as similarity."""
        hit_of = await self._hit_reader(records)
        return [hit for r in records if (hit := hit_of(r)) is not None]

    async def _hit_reader(self, records: Sequence[Record]) -> Callable[[Record], Hit | None]:
        """How each of these records becomes its hit: None for a point deleted since the search."""
        if self._cache is None:
            return lambda r: to_hit(r.payload, r.score)
        found = await self._cached_hits(self._cache, list(dict.fromkeys(r.id for r in records)))
        return lambda r: found[r.id].at(float(r.score)) if r.id in found else None

    async def _cached_hits(self, cache: HitCache, point_ids: list[str]) -> dict[str, Hit]:
        """The hits of these points (similarity 0): from the cache, the rest read in one call and kept."""
        found = {i: hit for i in point_ids if (hit := cache.get(i)) is not None}
        missing = [i for i in point_ids if i not in found]
        if missing:
            generation = cache.generation
            read = {r.id: to_hit(r.payload, 0.0) for r in await self.engine.retrieve(missing, HIT_FIELDS)}
            cache.keep(generation, read)
            found.update(read)
        return found

    def _forget(self, point_ids: Sequence[str] | None) -> None:
        """Before and after a write: its points' cached hits (all, for None) are no longer known."""
        if self._cache is not None:
            self._cache.clear() if point_ids is None else self._cache.forget(point_ids)

    def _sparse(self, terms: Mapping[int, float]) -> Sparse:
        return Sparse(*checked_sparse(terms))

    def _point(self, contribution: Contribution) -> Point:
        terms = sparse_terms(contribution)
        return Point(
            id=point_id(contribution.tenant, contribution.post_id),
            dense=checked_vector(contribution.vector, self.dimensions),
            payload=to_payload(contribution),
            sparse=self._sparse(terms) if terms else None,
        )

    async def upsert(self, contributions: Sequence[Contribution]) -> None:
        """Index contributions; a post indexed again replaces its point."""
        if contributions:
            points = [self._point(c) for c in contributions]
            ids = [p.id for p in points]
            self._forget(ids)
            try:
                await self.engine.upsert(points)
            finally:
                self._forget(ids)

    async def delete_post(self, tenant: str, post_id: str) -> None:
        """Remove a post's point and the responses to it (nothing happens if it is not there)."""
        ids = [point_id(tenant, post_id)]
        self._forget(ids)
        try:
            await self.engine.delete_ids(ids)
        finally:
            self._forget(ids)
        await self.engine.delete_where(matching(feedback_partition(tenant), post_id=post_id))

    async def erase_person(self, tenant: str, person_id: str) -> int:
        """Remove every contribution and response of a person; returns how many points went."""
        removed = 0
        # Their texts leave memory too, not only the engine.
        self._forget(None)
        try:
            for partition in (tenant, feedback_partition(tenant)):
                removed += await self.engine.delete_where(matching(partition, author_id=person_id))
        finally:
            self._forget(None)
        return removed

    async def vector(self, tenant: str, post_id: str) -> list[float] | None:
        """The dense vector a post was indexed with; None if it is not there."""
        return await self.engine.retrieve_dense(point_id(tenant, post_id))

    async def record_feedback(self, feedback: Feedback) -> None:
        """Keep a response beside its question's vector, replacing the person's earlier one (not an answer)."""
        point = Point(
            id=feedback_point_id(feedback),
            dense=checked_vector(feedback.vector, self.dimensions),
            payload=feedback_payload(feedback),
        )
        await self.engine.upsert([point])

    async def feedback_near(
        self, tenant: str, vector: Sequence[float], *, limit: int, before: datetime | None = None
    ) -> list[FeedbackHit]:
        """Responses given on the questions closest to `vector`, closest first."""
        where = Scope(before=before).where(feedback_partition(tenant))
        nearest = Nearest(checked_vector(vector, self.dimensions), DENSE, where, _at_least_one(limit))
        return [to_feedback_hit(r.payload, r.score) for r in await self.engine.query(nearest)]

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
        """Nearest contributions of one tenant by cosine similarity, closest first."""
        query = checked_vector(vector, self.dimensions)
        where = Scope(audiences, exclude_authors, exclude_threads, before).where(tenant)
        nearest = Nearest(query, DENSE, where, _at_least_one(limit), fields=self._hit_fields)
        return await self._hits(await self.engine.query(nearest))

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
        """Each author's nearest contributions, one query per author in one batch."""
        _at_least_one(limit)
        authors = list(dict.fromkeys(authors))
        if not authors:
            return {}
        query = checked_vector(vector, self.dimensions)
        where = Scope(audiences, (), exclude_threads, before).where(tenant)
        if kinds is not None:
            where = where.also(kinds_of(kinds))
        batch = [
            Nearest(query, DENSE, where.also(any_of("author_id", [author])), limit, fields=self._hit_fields)
            for author in authors
        ]
        found = await self.engine.query_batch(batch)
        # One read of the payloads for all the authors' records.
        hit_of = await self._hit_reader([r for records in found for r in records])
        by_author = {
            author: [hit for r in records if (hit := hit_of(r)) is not None]
            for author, records in zip(authors, found, strict=True)
        }
        return {author: hits for author, hits in by_author.items() if hits}

    async def search_sparse(
        self,
        tenant: str,
        sparse: Mapping[int, float],
        *,
        limit: int,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        exclude_threads: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        """Contributions of one tenant by lexical (sparse, IDF-weighted) score, best first."""
        return await self._lexical(tenant, sparse, limit, Scope(audiences, exclude_authors, exclude_threads, before))

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
        """Contributions of one tenant by BM25 score of their title and text, best first."""
        terms = query_terms(text)
        if not terms:  # only stopwords or punctuation: nothing to match
            return []
        return await self._lexical(tenant, terms, limit, Scope(audiences, exclude_authors, exclude_threads, before))

    async def _lexical(self, tenant: str, sparse: Mapping[int, float], limit: int, scope: Scope) -> list[Hit]:
        query = self._sparse(sparse)
        # IDF over the tenant's own contributions as of `before`: no other tenant, no future.
        corpus = Scope(before=scope.before).where(tenant)
        nearest = Nearest(query, SPARSE, scope.where(tenant), _at_least_one(limit), corpus, fields=self._hit_fields)
        return await self._hits(await self.engine.query(nearest))

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
        """How many matching contributions each author has (only authors with at least one)."""
        where = count_where(
            tenant, kinds=kinds, tags_any=tags_any, accepted=accepted, after=after, before=before, authors=authors
        )
        return await self.engine.facet("author_id", where, _at_least_one(limit))

    async def recent_authors(
        self,
        tenant: str,
        *,
        kinds: Sequence[PostKind] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int,
    ) -> list[str]:
        """The authors of the latest `limit` matching contributions, newest first (one scroll by `created_ts`)."""
        where = count_where(tenant, kinds=kinds, after=after, before=before)
        records = await self.engine.latest(where, ["author_id"], _at_least_one(limit))
        return [str(r.payload.get("author_id", "")) for r in records]

    async def accepted_questions(self, tenant: str, *, limit: int) -> list[AcceptedQuestion]:
        """The questions of the latest `limit` accepted answers, with vectors, oldest first (two scrolls)."""
        accepted = count_where(tenant, kinds=[PostKind.ANSWER], accepted=True)
        latest = await self.engine.latest(accepted, ["thread_id", "author_id"], _at_least_one(limit))
        answerers = accepted_answerers([r.payload for r in latest])
        if not answerers:
            return []
        where = matching(tenant).also(any_of("thread_id", list(answerers)), kinds_of([PostKind.QUESTION]))
        found = (
            accepted_question(r.payload, r.dense, answerers)
            for r in await self.engine.scroll(where, True, dense=True)
            if r.dense is not None
        )
        return sorted(found, key=oldest_first)

    async def thread_answers(
        self,
        tenant: str,
        thread_ids: Sequence[str],
        *,
        audiences: Sequence[str] | None = None,
        exclude_authors: Sequence[str] = (),
        before: datetime | None = None,
    ) -> list[Hit]:
        """The answers in these threads, by thread then post id; `Hit.similarity` is 0."""
        if not thread_ids:
            return []
        where = Scope(audiences, exclude_authors, (), before).where(tenant)
        where = where.also(any_of("thread_id", thread_ids), kinds_of([PostKind.ANSWER]))
        records = await self.engine.scroll(where, self._hit_fields)
        return sorted(await self._hits(records), key=lambda h: (h.thread_id, h.post_id))

    async def thread(self, tenant: str, thread_id: str) -> ThreadInfo:
        """The thread's title and everyone who has posted in it."""
        payloads = [r.payload for r in await self.engine.scroll(matching(tenant, thread_id=thread_id), THREAD_FIELDS)]
        return ThreadInfo(
            thread_id=thread_id,
            title=thread_title(payloads),
            participants=frozenset(p["author_id"] for p in payloads if p.get("author_id")),
        )

    async def count(self, tenant: str, post_ids: Sequence[str] | None = None) -> int:
        """How many contributions a tenant has indexed; of `post_ids` only, when given."""
        where = matching(tenant)
        if post_ids is not None:
            if not post_ids:
                return 0
            where = where.also(any_of("post_id", post_ids))
        return await self.engine.count(where)

    async def ready(self) -> bool:
        """True when the engine is open and answers."""
        return await self.engine.ready()

    async def close(self) -> None:
        """Close the engine (after the calls already under way); idempotent."""
        await self.engine.close()

