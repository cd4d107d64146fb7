"""QdrantServerIndex: the contributions in one collection of a Qdrant server (AsyncQdrantClient).

Tests run the same calls against qdrant-client's local mode (`location=":memory:"`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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
from services.matcher.index.counts import FacetCounts
from services.matcher.index.lexical import LexicalSearch
from services.matcher.index.payload import (
    DENSE,
    DIMENSIONS,
    KEYWORD_FIELDS,
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
from services.matcher.index.server_filters import (
    any_of,
    count_filter,
    matching,
    search_filter,
)
from shared.events import PostKind

DEFAULT_COLLECTION = "contributions"
_SCROLL_PAGE = 256


@contextmanager
def _unavailable_on_failure(collection: str) -> Iterator[None]:
    """Connection errors, timeouts and 5xx become IndexUnavailable; a 400 becomes ValueError."""
    try:
        yield
    except (httpx.TransportError, ResponseHandlingException, TimeoutError, ConnectionError) as exc:
        raise IndexUnavailable(f"Qdrant did not answer for {collection!r}: {exc}") from exc
    except UnexpectedResponse as exc:
        if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 429:
            raise IndexUnavailable(f"Qdrant failed for {collection!r}: {exc}") from exc
        if exc.status_code == 400:
            raise ValueError(f"Qdrant refused the request for {collection!r}: {exc}") from exc
        raise


def _field_indexes() -> dict[str, models.PayloadSchemaParams]:
    keyword = models.KeywordIndexType.KEYWORD
    # Only the tenant gets HNSW links: per-author or per-thread graphs would cost more than they give.
    indexes: dict[str, models.PayloadSchemaParams] = {
        "tenant": models.KeywordIndexParams(type=keyword, is_tenant=True)
    }
    indexes.update(
        {name: models.KeywordIndexParams(type=keyword, enable_hnsw=False) for name in KEYWORD_FIELDS}
    )
    indexes["created_ts"] = models.IntegerIndexParams(
        type=models.IntegerIndexType.INTEGER, range=True, lookup=False, enable_hnsw=False
    )
    indexes["accepted"] = models.BoolIndexParams(type=models.BoolIndexType.BOOL, enable_hnsw=False)
    return indexes


class QdrantServerIndex(LexicalSearch, FacetCounts):
    """The ExpertIndex on a Qdrant collection; open it with `await QdrantServerIndex.open(client)`."""

    _count_filter = staticmethod(count_filter)

    def __init__(self, client: AsyncQdrantClient, collection: str, dimensions: int):
        self._client = client
        self._closed = False
        self.collection = collection
        self.dimensions = dimensions

    @classmethod
    async def open(
        cls,
        client: AsyncQdrantClient,
        collection: str = DEFAULT_COLLECTION,
        *,
        dimensions: int = DIMENSIONS,
    ) -> QdrantServerIndex:
        """Use `collection` (created with its payload indexes if missing); the index owns `client`."""
        index = cls(client, collection, dimensions)
        with _unavailable_on_failure(collection):
            await index._ensure_collection()
        return index

    async def _ensure_collection(self) -> None:
        if not await self._client.collection_exists(self.collection):
            try:
                await self._client.create_collection(
                    self.collection,
                    vectors_config={DENSE: models.VectorParams(size=self.dimensions, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                    # Every search filters by tenant: per-tenant graphs, no global one.
                    hnsw_config=models.HnswConfigDiff(payload_m=16, m=0),
                )
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # another replica created it first
                    raise
        existing = (await self._client.get_collection(self.collection)).payload_schema
        with warnings.catch_warnings():
            # Local mode (tests) ignores payload indexes and says so on every call.
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for name, params in _field_indexes().items():
                if name not in existing:
                    await self._client.create_payload_index(self.collection, name, params, wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise IndexUnavailable(f"the index on {self.collection!r} is closed")

    def _point(self, contribution: Contribution) -> models.PointStruct:
        vectors: dict[str, Any] = {DENSE: checked_vector(contribution.vector, self.dimensions)}
        if terms := sparse_terms(contribution):
            indices, values = checked_sparse(terms)
            vectors[SPARSE] = models.SparseVector(indices=indices, values=values)
        return models.PointStruct(
            id=point_id(contribution.tenant, contribution.post_id),
            vector=vectors,
            payload=to_payload(contribution),
        )

    async def upsert(self, contributions: Sequence[Contribution]) -> None:
        """Index contributions; a post indexed again replaces its point."""
        if not contributions:
            return
        points = [self._point(c) for c in contributions]
        self._check_open()
        with _unavailable_on_failure(self.collection):
            await self._client.upsert(self.collection, points=points, wait=True)

    async def delete_post(self, tenant: str, post_id: str) -> None:
        """Remove a post's point and the responses to it (nothing happens if it is not there)."""
        self._check_open()
        point = models.PointIdsList(points=[point_id(tenant, post_id)])
        responses = models.FilterSelector(filter=matching(feedback_partition(tenant), post_id=post_id))
        with _unavailable_on_failure(self.collection):
            await self._client.delete(self.collection, points_selector=point, wait=True)
            await self._client.delete(self.collection, points_selector=responses, wait=True)

    async def erase_person(self, tenant: str, person_id: str) -> int:
        """Remove every contribution and response of a person; returns how many points went."""
        self._check_open()
        removed = 0
        with _unavailable_on_failure(self.collection):
            for partition in (tenant, feedback_partition(tenant)):
                where = matching(partition, author_id=person_id)
                removed += (await self._client.count(self.collection, count_filter=where, exact=True)).count
                selector = models.FilterSelector(filter=where)
                await self._client.delete(self.collection, points_selector=selector, wait=True)
        return removed

    async def vector(self, tenant: str, post_id: str) -> list[float] | None:
        """The dense vector a post was indexed with; None if it is not there."""
        self._check_open()
        with _unavailable_on_failure(self.collection):
            records = await self._client.retrieve(
                self.collection, ids=[point_id(tenant, post_id)], with_payload=False, with_vectors=[DENSE]
            )
        if not records or not isinstance(records[0].vector, dict):
            return None
        return [float(x) for x in records[0].vector[DENSE]]

    async def record_feedback(self, feedback: Feedback) -> None:
        """Keep a response beside its question's vector, replacing the person's earlier one (not an answer)."""
        point = models.PointStruct(
            id=feedback_point_id(feedback),
            vector={DENSE: checked_vector(feedback.vector, self.dimensions)},
            payload=feedback_payload(feedback),
        )
        self._check_open()
        with _unavailable_on_failure(self.collection):
            await self._client.upsert(self.collection, points=[point], wait=True)

    async def feedback_near(
        self, tenant: str, vector: Sequence[float], *, limit: int, before: datetime | None = None
    ) -> list[FeedbackHit]:
        """Responses given on the questions closest to `vector`, closest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = checked_vector(vector, self.dimensions)
        where = search_filter(feedback_partition(tenant), None, (), (), before)
        self._check_open()
        with _unavailable_on_failure(self.collection):
            response = await self._client.query_points(
                self.collection, query=query, using=DENSE, query_filter=where, limit=limit, with_payload=True
            )
        return [to_feedback_hit(p.payload or {}, p.score) for p in response.points]

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
        where = search_filter(tenant, audiences, exclude_authors, exclude_threads, before)
        return await self._query(query, DENSE, where, limit)

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
        """Each author's nearest contributions, one query per author in one batch request."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        authors = list(dict.fromkeys(authors))
        if not authors:
            return {}
        self._check_open()
        query = checked_vector(vector, self.dimensions)
        where = search_filter(tenant, audiences, (), exclude_threads, before)
        must = [*(where.must or [])] + ([any_of("kind", [PostKind(k).value for k in kinds])] if kinds is not None else [])
        requests = [
            models.QueryRequest(
                query=query, using=DENSE, limit=limit, with_payload=True,
                filter=models.Filter(must=[*must, any_of("author_id", [author])], must_not=where.must_not),
            )
            for author in authors
        ]
        with _unavailable_on_failure(self.collection):
            responses = await self._client.query_batch_points(self.collection, requests=requests)
        return {
            author: [to_hit(p.payload or {}, p.score) for p in response.points]
            for author, response in zip(authors, responses, strict=True)
            if response.points
        }

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
        indices, values = checked_sparse(sparse)
        query = models.SparseVector(indices=indices, values=values)
        where = search_filter(tenant, audiences, exclude_authors, exclude_threads, before)
        # IDF over the tenant's own contributions as of `before`: no other tenant, no future.
        corpus = models.IdfCorpusParams(corpus=search_filter(tenant, None, (), (), before))
        return await self._query(query, SPARSE, where, limit, models.SearchParams(idf=corpus))

    async def _query(
        self, query: Any, using: str, where: models.Filter, limit: int, params: models.SearchParams | None = None
    ) -> list[Hit]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._check_open()
        with _unavailable_on_failure(self.collection):
            response = await self._client.query_points(
                self.collection,
                query=query,
                using=using,
                query_filter=where,
                search_params=params,
                limit=limit,
                with_payload=True,
            )
        return [to_hit(p.payload or {}, p.score) for p in response.points]

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
        where = search_filter(tenant, audiences, exclude_authors, (), before)
        where = models.Filter(
            must=[*(where.must or []), any_of("thread_id", thread_ids), any_of("kind", [PostKind.ANSWER.value])],
            must_not=where.must_not,
        )
        payloads = await self._scroll(where, True)
        return sorted((to_hit(p, 0.0) for p in payloads), key=lambda h: (h.thread_id, h.post_id))

    async def _scroll(self, where: models.Filter, fields: Any) -> list[dict[str, Any]]:
        """The payloads (`fields` of them) of every point matching `where`, page by page."""
        return [r.payload or {} for r in await self._records(where, fields)]

    async def _records(self, where: models.Filter, fields: Any, vectors: list[str] | None = None) -> list[Any]:
        """Every point matching `where` (its `fields` and `vectors`), page by page."""
        self._check_open()
        records: list[Any] = []
        offset = None
        with _unavailable_on_failure(self.collection):
            while True:
                page, offset = await self._client.scroll(
                    self.collection,
                    scroll_filter=where,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=fields,
                    with_vectors=vectors or False,
                )
                records += page
                if offset is None:
                    return records

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
        payloads = await self._latest(count_filter(tenant, kinds=kinds, after=after, before=before), ["author_id"], limit)
        return [str(p.get("author_id", "")) for p in payloads]

    async def accepted_questions(self, tenant: str, *, limit: int) -> list[AcceptedQuestion]:
        """The questions of the latest `limit` accepted answers, with vectors, oldest first (two scrolls)."""
        accepted = count_filter(tenant, kinds=[PostKind.ANSWER], accepted=True)
        answerers = accepted_answerers(await self._latest(accepted, ["thread_id", "author_id"], limit))
        if not answerers:
            return []
        where = models.Filter(
            must=[*(matching(tenant).must or []), any_of("thread_id", list(answerers)), any_of("kind", [PostKind.QUESTION.value])]
        )
        found = (
            accepted_question(r.payload or {}, [float(x) for x in r.vector[DENSE]], answerers)
            for r in await self._records(where, True, [DENSE])
            if isinstance(r.vector, dict)
        )
        return sorted(found, key=oldest_first)

    async def _latest(self, where: models.Filter, fields: list[str], limit: int) -> list[dict[str, Any]]:
        """The payloads of the latest `limit` points matching `where`, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._check_open()
        order = models.OrderBy(key="created_ts", direction=models.Direction.DESC)
        with _unavailable_on_failure(self.collection):
            records, _ = await self._client.scroll(
                self.collection, scroll_filter=where, limit=limit, with_payload=fields, order_by=order
            )
        return [r.payload or {} for r in records]

    async def thread(self, tenant: str, thread_id: str) -> ThreadInfo:
        """The thread's title and everyone who has posted in it."""
        payloads = await self._scroll(matching(tenant, thread_id=thread_id), THREAD_FIELDS)
        return ThreadInfo(
            thread_id=thread_id,
            title=thread_title(payloads),
            participants=frozenset(p["author_id"] for p in payloads if p.get("author_id")),
        )

    async def _facet(self, key: str, where: models.Filter, limit: int) -> dict[str, int]:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self._check_open()
        with _unavailable_on_failure(self.collection):
            response = await self._client.facet(self.collection, key=key, facet_filter=where, limit=limit, exact=True)
        return {str(hit.value): hit.count for hit in response.hits if hit.count > 0}

    async def count(self, tenant: str) -> int:
        """How many contributions a tenant has indexed."""
        self._check_open()
        with _unavailable_on_failure(self.collection):
            return (await self._client.count(self.collection, count_filter=matching(tenant), exact=True)).count

    async def ready(self) -> bool:
        """True when the collection answers a count."""
        try:
            self._check_open()
            with _unavailable_on_failure(self.collection):
                await self._client.count(self.collection, exact=False)
        except (IndexUnavailable, ValueError, UnexpectedResponse):
            return False
        return True

    async def close(self) -> None:
        """Close the client; idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.close()
