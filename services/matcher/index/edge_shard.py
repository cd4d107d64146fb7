"""Opening a Qdrant Edge shard (its config and payload indexes), compacting it offline, and Edge's errors as ours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qdrant_edge import (
    BoolIndexParams,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    HnswIndexConfig,
    IntegerIndexParams,
    KeywordIndexParams,
    Memory,
    Modifier,
    ScalarQuantizationConfig,
    ScalarType,
    UpdateOperation,
)

from services.matcher.index.base import IndexUnavailable
from services.matcher.index.payload import ACCEPTED_FLAG, DENSE, KEYWORD_FIELDS, SPARSE

_CONFIG_FILE = "edge_config.json"
# Edge raises bare Exceptions; these message prefixes mean the request itself was wrong.
_BAD_INPUT = ("Wrong input", "Bad input", "Bad request", "Vector dimension error", "Validation")


class ShardLocked(IndexUnavailable):
    """The shard is already open, in this process or another: its WAL is locked."""


def shard_config(dimensions: int) -> EdgeConfig:
    """The shard's config. Points land in an appendable segment (plain, in RAM) whatever it says;
    the rest applies to the segments `compact` writes: int8 copies of the dense vectors searched
    first (rescored with the originals, which stay on disk), an HNSW graph per tenant, and the
    payloads kept in memory.

    The graph has no links across the whole shard (`m=0`), only within each value of the payload
    indexes built with HNSW links, which is the `tenant` index alone (`is_tenant`; the others are
    `enable_hnsw=False`): every search filters by tenant, so a graph over all tenants would only
    be walked through other tenants' points. A filter the payload index finds few points for (under
    `full_scan_threshold` KB of vectors, about 6,600 points) is searched exactly instead.

    Measured at 1M real contributions (the `make bench-scale` layout: a 400k tenant and 30 of 20k;
    the shard's own query, ids only, the matcher's filter, 30 questions each, load 2.3): the dense
    top 300 of the 400k tenant in 6.1 ms p50 (int8 rescored, through the graph) against 158 ms
    exact, recall@300 0.990 against exact (min 0.963); a 20k tenant 3.8 ms, recall 0.992. Without
    the graph the int8 search read every point of the tenant: recall 1.000, but 146 ms for the
    rank step's dense search at 1M against 56 ms with it (`python -m tests.bench.rank --index
    FOLDER` on the kept 1M index and on a copy compacted with the graph, payload reads included).
    Payloads are `Memory.Cached`: a search asks Edge for ids and reads the payloads of the hits it
    has not cached (hit_cache.py), and on disk (`Memory.Cold`) a first read cost about 0.1 ms a
    point here. At 1M, on the shard's thread (`python -m tests.bench.rank --index FOLDER
    --questions 30`, two interleaved runs, load 1.7-3.4), large tenant p50: dense search 52-53 ->
    23-24 ms, lexical 70-72 -> 47-50 ms, thread answers 37-38 -> 14-16 ms; the rank step 267-278
    -> 171-182 ms. The price is memory: the payload files (0.83 GiB at 1M) stay resident, as
    pages of a mapped file the kernel may take back.
    Loading an older shard with this config keeps its points; its segments get the graph and the
    payload placement at the next `compact`.
    """
    quantized = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, memory=Memory.Cached)
    return EdgeConfig(
        vectors={
            DENSE: EdgeVectorParams(
                size=dimensions, distance=Distance.Cosine, quantization_config=quantized, memory=Memory.Cold
            )
        },
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf, memory=Memory.Cold)},
        payload_memory=Memory.Cached,
        hnsw_config=HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=16),
    )


def _field_indexes() -> dict[str, Any]:
    # Only the tenant gets HNSW links: the others would multiply the cost of any index build.
    indexes: dict[str, Any] = {"tenant": KeywordIndexParams(is_tenant=True)}
    indexes.update({name: KeywordIndexParams(enable_hnsw=False) for name in KEYWORD_FIELDS})
    indexes["created_ts"] = IntegerIndexParams(range=True, lookup=False, enable_hnsw=False)
    indexes["accepted"] = BoolIndexParams(enable_hnsw=False)
    indexes[ACCEPTED_FLAG] = IntegerIndexParams(range=False, lookup=True, enable_hnsw=False)
    return indexes


def open_shard(path: Path, dimensions: int) -> EdgeShard:
    """Load the shard at `path`, or create it; then add any missing payload index."""
    config = shard_config(dimensions)
    try:
        if (path / _CONFIG_FILE).exists():
            shard = EdgeShard.load(str(path), config)
        else:
            path.mkdir(parents=True, exist_ok=True)
            shard = EdgeShard.create(str(path), config)
    except Exception as exc:
        if "WAL" in str(exc):
            raise ShardLocked(
                f"the index at {path} is already open (its WAL is locked): "
                "one process, and one EdgeIndex in it, may hold a shard at a time"
            ) from exc
        raise
    existing = set(shard.info().payload_schema)
    for name, params in _field_indexes().items():
        if name not in existing:
            shard.update(UpdateOperation.create_field_index(name, params))
    return shard


def compact(path: Path, dimensions: int) -> bool:
    """Rewrite the shard's segments as `shard_config` says (int8 copies, originals on disk, a graph
    per tenant); True if any changed.

    Offline only, with the matcher stopped: Edge's optimize holds the GIL for the whole build,
    which would freeze a serving event loop. At 1M contributions (bench-scale layout) adding the
    per-tenant graphs to an int8-compacted shard took 568 s (one core busy, load about 5) and
    peaked at 11.4 GiB RSS; the int8 compaction alone had taken 842 s. At 100k both took 32-37 s.
    The shard's lock makes it fail with ShardLocked while a matcher holds the shard.
    """
    shard = open_shard(path, dimensions)
    try:
        return shard.optimize()
    finally:
        shard.close()


def translate(exc: Exception) -> Exception:
    """Edge's bare Exception as a ValueError (bad request) or IndexUnavailable (the rest)."""
    message = str(exc)
    if isinstance(exc, (ValueError, TypeError)) or message.startswith(_BAD_INPUT):
        return ValueError(message)
    return IndexUnavailable(f"Qdrant Edge failed: {message}")
