"""EdgeEngine: a Qdrant Edge shard on disk, in this process; `EdgeIndex.open(path)` builds the index.

The shard is used from one dedicated worker thread only; the event loop awaits it. Points written
since the last `expertmatch compact-index` are searched exactly; compacted segments through int8
copies and a graph per tenant (edge_shard.shard_config). No graph is built on the serving path:
`optimize()` holds the GIL for seconds to minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from qdrant_edge import (
    CountRequest,
    Direction,
    EdgeShard,
    FacetRequest,
    FieldCondition,
    Filter,
    IdfParams,
    MatchAny,
    MatchValue,
    OrderBy,
    Point as EdgePoint,
    QuantizationSearchParams,
    Query,
    QueryBatchRequest,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

from services.matcher.index.base import IndexUnavailable
from services.matcher.index.edge_shard import open_shard, translate
from services.matcher.index.engine import Nearest, Point, Record, Sparse
from services.matcher.index.hit_cache import HitCache
from services.matcher.index.payload import ACCEPTED_FLAG, DENSE, DIMENSIONS, SPARSE
from services.matcher.index.qdrant import QdrantIndex
from services.matcher.index.where import AnyOf, Between, Condition, Is, Where

T = TypeVar("T")

# A scroll reads every matching point (thread answers, a thread, accepted questions), and each page
# runs the filter again: the answers in the threads of a question's hits (~550 of a 40k tenant at
# bench-scale 100k) took 13.3 ms in pages of 256, 8.4 ms in pages of 4,096.
_SCROLL_PAGE = 4096
# A dense search reads the int8 copies for twice the points asked (through the tenant's graph in a
# compacted segment), then rescores those with the original vectors: recall@300 0.990 against exact
# for the 400k tenant at 1M real contributions (bench-scale), 0.991-0.992 with hnsw_ef 800-1500,
# so the graph's default ef (at least the 600 candidates asked) stays.
# Segments without int8 copies (the appendable one, every segment until `compact`) are exact.
_DENSE_PARAMS = SearchParams(quantization=QuantizationSearchParams(rescore=True, oversampling=2.0))


def _condition(condition: Condition) -> FieldCondition:
    match condition:
        case Is(key, value):
            return FieldCondition(key=key, match=MatchValue(value))
        case AnyOf(key, values):
            return FieldCondition(key=key, match=MatchAny(list(values)))
        case Between(key, gte, lt):
            return FieldCondition(key=key, range=RangeFloat(gte=gte, lt=lt))


def edge_filter(where: Where) -> Filter:
    """`where` in Edge's dialect."""
    must: list[Any] = []
    must_not: list[Any] = [_condition(c) for c in where.must_not]
    for condition in where.must:
        if isinstance(condition, Is) and condition.key == "accepted":
            # Edge 0.9 never matches a boolean (payload.ACCEPTED_FLAG): filter on the 0/1 mirror.
            # Not accepted = anything but flag 1, so points indexed before the flag existed count too.
            flag = FieldCondition(key=ACCEPTED_FLAG, match=MatchValue(1))
            (must if condition.value else must_not).append(flag)
        else:
            must.append(_condition(condition))
    return Filter(must=must, must_not=must_not or None)


def _vector(vector: list[float] | Sparse) -> Any:
    return SparseVector(vector.indices, vector.values) if isinstance(vector, Sparse) else vector


def _point(point: Point) -> EdgePoint:
    vectors: dict[str, Any] = {DENSE: point.dense}
    if point.sparse is not None:
        vectors[SPARSE] = _vector(point.sparse)
    return EdgePoint(id=point.id, vector=vectors, payload=point.payload)


def _request(nearest: Nearest) -> QueryRequest:
    if nearest.idf_where is not None:
        params = SearchParams(idf=IdfParams(corpus=edge_filter(nearest.idf_where)))
    else:
        params = _DENSE_PARAMS if nearest.using == DENSE else None
    return QueryRequest(
        limit=nearest.limit,
        query=Query.Nearest(_vector(nearest.vector), using=nearest.using),
        filter=edge_filter(nearest.where),
        with_payload=nearest.fields if isinstance(nearest.fields, bool) else list(nearest.fields),
        params=params,
    )


def _record(point: Any, dense: bool = False) -> Record:
    vector = [float(x) for x in point.vector[DENSE]] if dense and point.vector is not None else None
    return Record(
        payload=point.payload or {}, score=getattr(point, "score", 0.0) or 0.0, dense=vector, id=str(point.id)
    )


def _scroll_all(shard: EdgeShard, where: Filter, fields: Any, vectors: list[str] | None) -> list[Any]:
    records: list[Any] = []
    offset = None
    while True:
        request = ScrollRequest(
            offset=offset, limit=_SCROLL_PAGE, filter=where, with_payload=fields, with_vector=vectors
        )
        page, offset = shard.scroll(request)
        records += page
        if offset is None:
            return records


class EdgeEngine:
    """The Engine on a Qdrant Edge shard, every call on the shard's one worker thread."""

    def __init__(self, shard: EdgeShard, executor: ThreadPoolExecutor, path: Path):
        self._shard: EdgeShard | None = shard
        self._executor = executor
        self.path = path

    @classmethod
    async def open(cls, path: Path, dimensions: int) -> EdgeEngine:
        """Open the shard at `path` (created if absent) in its own worker thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-shard")
        try:
            shard = await asyncio.get_running_loop().run_in_executor(executor, open_shard, path, dimensions)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(shard, executor, path)

    async def run(self, call: Callable[[EdgeShard], T]) -> T:
        """Run `call(shard)` on the shard's worker thread, Edge's errors as ours."""
        shard = self._shard
        if shard is None:
            raise IndexUnavailable(f"the index at {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, shard)
        except Exception as exc:
            raise translate(exc) from exc

    async def upsert(self, points: Sequence[Point]) -> None:
        operation = UpdateOperation.upsert_points([_point(p) for p in points])
        await self.run(lambda shard: shard.update(operation))

    async def delete_ids(self, ids: Sequence[str]) -> None:
        operation = UpdateOperation.delete_points(list(ids))
        await self.run(lambda shard: shard.update(operation))

    async def delete_where(self, where: Where) -> int:
        selected = edge_filter(where)

        def delete(shard: EdgeShard) -> int:
            removed = shard.count(CountRequest(exact=True, filter=selected))
            shard.update(UpdateOperation.delete_points_by_filter(selected))
            return removed

        return await self.run(delete)

    async def retrieve_dense(self, point_id: str) -> list[float] | None:
        records = await self.run(lambda shard: shard.retrieve([point_id], False, [DENSE]))
        if not records or records[0].vector is None:
            return None
        return [float(x) for x in records[0].vector[DENSE]]

    async def retrieve(self, point_ids: Sequence[str], fields: Sequence[str]) -> list[Record]:
        ids, with_payload = list(point_ids), list(fields)
        return [_record(r) for r in await self.run(lambda shard: shard.retrieve(ids, with_payload, None))]

    async def query(self, nearest: Nearest) -> list[Record]:
        request = _request(nearest)
        return [_record(p) for p in await self.run(lambda shard: shard.query(request))]

    async def query_batch(self, queries: Sequence[Nearest]) -> list[list[Record]]:
        batch = QueryBatchRequest([_request(q) for q in queries])
        found = await self.run(lambda shard: shard.query_batch(batch))
        return [[_record(p) for p in points] for points in found]

    async def scroll(self, where: Where, fields: Sequence[str] | bool, *, dense: bool = False) -> list[Record]:
        selected, with_payload = edge_filter(where), fields if isinstance(fields, bool) else list(fields)
        vectors = [DENSE] if dense else None
        records = await self.run(lambda shard: _scroll_all(shard, selected, with_payload, vectors))
        return [_record(r, dense) for r in records]

    async def latest(self, where: Where, fields: Sequence[str], limit: int) -> list[Record]:
        order = OrderBy(key="created_ts", direction=Direction.Desc)
        request = ScrollRequest(limit=limit, filter=edge_filter(where), with_payload=list(fields), order_by=order)
        records, _ = await self.run(lambda shard: shard.scroll(request))
        # Payloads only: reading a point's id builds a uuid.UUID, and with ids the latest 2,000
        # answers (counts.py) took 8.6 ms to read back against 0.3 ms without (5,000 points).
        return [Record(payload=r.payload or {}) for r in records]

    async def facet(self, key: str, where: Where, limit: int) -> dict[str, int]:
        # Not exact: on the eval replays of all four datasets (11,432 facets) every count was the
        # exact one, in a fifteenth of the time (physics: 4.1 s against 64.3 s). The contract's
        # count tests hold Edge to exact counts.
        request = FacetRequest(key=key, limit=limit, exact=False, filter=edge_filter(where))
        response = await self.run(lambda shard: shard.facet(request))
        return {str(hit.value): hit.count for hit in response.hits if hit.count > 0}

    async def count(self, where: Where) -> int:
        request = CountRequest(exact=True, filter=edge_filter(where))
        return await self.run(lambda shard: shard.count(request))

    async def ready(self) -> bool:
        """True when the shard is open and answers a count."""
        try:
            await self.run(lambda shard: shard.count(CountRequest(exact=True)))
        except (IndexUnavailable, ValueError):
            return False
        return True

    async def close(self) -> None:
        """Flush and close the shard after the calls already queued; idempotent."""
        shard, self._shard = self._shard, None
        if shard is None:
            return

        def flush_and_close() -> None:
            shard.flush()
            shard.close()

        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, flush_and_close)
        except Exception as exc:
            raise translate(exc) from exc
        finally:
            self._executor.shutdown(wait=False)


class EdgeIndex(QdrantIndex):
    """The ExpertIndex on a Qdrant Edge shard; open it with `await EdgeIndex.open(path)`."""

    engine: EdgeEngine

    @classmethod
    async def open(cls, path: Path, *, dimensions: int = DIMENSIONS) -> EdgeIndex:
        """Open the shard at `path` (created if absent).

        Its hits are cached: the shard's lock makes this index the only one writing it.
        """
        return cls(await EdgeEngine.open(Path(path), dimensions), dimensions=dimensions, hit_cache=HitCache())

    @property
    def path(self) -> Path:
        return self.engine.path
