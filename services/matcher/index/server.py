"""ServerEngine: one collection of a Qdrant server (AsyncQdrantClient); `QdrantServerIndex.open` builds the index.

Tests run the same calls against qdrant-client's local mode (`location=":memory:"`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.matcher.index.base import DEFAULT_COLLECTION, IndexUnavailable
from services.matcher.index.engine import Nearest, Point, Record, Sparse
from services.matcher.index.payload import DENSE, DIMENSIONS, KEYWORD_FIELDS, SPARSE
from services.matcher.index.qdrant import QdrantIndex
from services.matcher.index.where import AnyOf, Between, Condition, Is, Where

_SCROLL_PAGE = 256


def _condition(condition: Condition) -> models.FieldCondition:
    match condition:
        case Is(key, value):
            return models.FieldCondition(key=key, match=models.MatchValue(value=value))
        case AnyOf(key, values):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        case Between(key, gte, lt):
            return models.FieldCondition(key=key, range=models.Range(gte=gte, lt=lt))


def server_filter(where: Where) -> models.Filter:
    """`where` in qdrant-client's dialect."""
    return models.Filter(
        must=[_condition(c) for c in where.must],
        must_not=[_condition(c) for c in where.must_not] or None,
    )


def _vector(vector: list[float] | Sparse) -> Any:
    if isinstance(vector, Sparse):
        return models.SparseVector(indices=vector.indices, values=vector.values)
    return vector


def _point(point: Point) -> models.PointStruct:
    vectors: dict[str, Any] = {DENSE: point.dense}
    if point.sparse is not None:
        vectors[SPARSE] = _vector(point.sparse)
    return models.PointStruct(id=point.id, vector=vectors, payload=point.payload)


def _params(nearest: Nearest) -> models.SearchParams | None:
    if nearest.idf_where is None:
        return None
    return models.SearchParams(idf=models.IdfCorpusParams(corpus=server_filter(nearest.idf_where)))


def _fields(nearest: Nearest) -> bool | list[str]:
    return nearest.fields if isinstance(nearest.fields, bool) else list(nearest.fields)


def _record(point: Any, dense: bool = False) -> Record:
    vector = [float(x) for x in point.vector[DENSE]] if dense and isinstance(point.vector, dict) else None
    return Record(
        payload=point.payload or {}, score=getattr(point, "score", 0.0) or 0.0, dense=vector, id=str(point.id)
    )


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


class ServerEngine:
    """The Engine on one collection of a Qdrant server; it owns its client."""

    def __init__(self, client: AsyncQdrantClient, collection: str):
        self._client = client
        self._closed = False
        self.collection = collection

    @contextmanager
    def _call(self) -> Iterator[AsyncQdrantClient]:
        """The client, if the engine is open, with its failures as ours."""
        if self._closed:
            raise IndexUnavailable(f"the index on {self.collection!r} is closed")
        with _unavailable_on_failure(self.collection):
            yield self._client

    async def ensure_collection(self, dimensions: int) -> None:
        """Create the collection and any missing payload index."""
        with self._call() as client:
            if not await client.collection_exists(self.collection):
                try:
                    await client.create_collection(
                        self.collection,
                        vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
                        sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                        # Every search filters by tenant: per-tenant graphs, no global one.
                        hnsw_config=models.HnswConfigDiff(payload_m=16, m=0),
                    )
                except UnexpectedResponse as exc:
                    if exc.status_code != 409:  # another replica created it first
                        raise
            existing = (await client.get_collection(self.collection)).payload_schema
            with warnings.catch_warnings():
                # Local mode (tests) ignores payload indexes and says so on every call.
                warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                for name, params in _field_indexes().items():
                    if name not in existing:
                        await client.create_payload_index(self.collection, name, params, wait=True)

    async def upsert(self, points: Sequence[Point]) -> None:
        with self._call() as client:
            await client.upsert(self.collection, points=[_point(p) for p in points], wait=True)

    async def delete_ids(self, ids: Sequence[str]) -> None:
        with self._call() as client:
            await client.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    async def delete_where(self, where: Where) -> int:
        selected = server_filter(where)
        with self._call() as client:
            removed = (await client.count(self.collection, count_filter=selected, exact=True)).count
            await client.delete(self.collection, points_selector=models.FilterSelector(filter=selected), wait=True)
        return removed

    async def retrieve_dense(self, point_id: str) -> list[float] | None:
        with self._call() as client:
            records = await client.retrieve(self.collection, ids=[point_id], with_payload=False, with_vectors=[DENSE])
        if not records or not isinstance(records[0].vector, dict):
            return None
        return [float(x) for x in records[0].vector[DENSE]]

    async def retrieve(self, point_ids: Sequence[str], fields: Sequence[str]) -> list[Record]:
        with self._call() as client:
            records = await client.retrieve(
                self.collection, ids=list(point_ids), with_payload=list(fields), with_vectors=False
            )
        return [_record(r) for r in records]

    async def query(self, nearest: Nearest) -> list[Record]:
        with self._call() as client:
            response = await client.query_points(
                self.collection,
                query=_vector(nearest.vector),
                using=nearest.using,
                query_filter=server_filter(nearest.where),
                search_params=_params(nearest),
                limit=nearest.limit,
                with_payload=_fields(nearest),
            )
        return [_record(p) for p in response.points]

    async def query_batch(self, queries: Sequence[Nearest]) -> list[list[Record]]:
        requests = [
            models.QueryRequest(
                query=_vector(q.vector), using=q.using, filter=server_filter(q.where),
                params=_params(q), limit=q.limit, with_payload=_fields(q),
            )
            for q in queries
        ]
        with self._call() as client:
            responses = await client.query_batch_points(self.collection, requests=requests)
        return [[_record(p) for p in response.points] for response in responses]

    async def scroll(self, where: Where, fields: Sequence[str] | bool, *, dense: bool = False) -> list[Record]:
        selected, with_payload = server_filter(where), fields if isinstance(fields, bool) else list(fields)
        records: list[Any] = []
        offset = None
        with self._call() as client:
            while True:
                page, offset = await client.scroll(
                    self.collection,
                    scroll_filter=selected,
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=with_payload,
                    with_vectors=[DENSE] if dense else False,
                )
                records += page
                if offset is None:
                    return [_record(r, dense) for r in records]

    async def latest(self, where: Where, fields: Sequence[str], limit: int) -> list[Record]:
        order = models.OrderBy(key="created_ts", direction=models.Direction.DESC)
        with self._call() as client:
            records, _ = await client.scroll(
                self.collection,
                scroll_filter=server_filter(where),
                limit=limit,
                with_payload=list(fields),
                order_by=order,
            )
        return [_record(r) for r in records]

    async def facet(self, key: str, where: Where, limit: int) -> dict[str, int]:
        with self._call() as client:
            response = await client.facet(
                self.collection, key=key, facet_filter=server_filter(where), limit=limit, exact=True
            )
        return {str(hit.value): hit.count for hit in response.hits if hit.count > 0}

    async def count(self, where: Where) -> int:
        with self._call() as client:
            return (await client.count(self.collection, count_filter=server_filter(where), exact=True)).count

    async def ready(self) -> bool:
        """True when the collection answers a count."""
        try:
            with self._call() as client:
                await client.count(self.collection, exact=False)
        except (IndexUnavailable, ValueError, UnexpectedResponse):
            return False
        return True

    async def close(self) -> None:
        """Close the client; idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.close()


class QdrantServerIndex(QdrantIndex):
    """The ExpertIndex on a Qdrant collection; open it with `await QdrantServerIndex.open(client)`."""

    engine: ServerEngine

    @classmethod
    async def open(
        cls,
        client: AsyncQdrantClient,
        collection: str = DEFAULT_COLLECTION,
        *,
        dimensions: int = DIMENSIONS,
    ) -> QdrantServerIndex:
        """Use `collection` (created with its payload indexes if missing); the index owns `client`."""
        engine = ServerEngine(client, collection)
        await engine.ensure_collection(dimensions)
        return cls(engine, dimensions=dimensions)

    @property
    def collection(self) -> str:
        return self.engine.collection
