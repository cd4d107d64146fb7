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
    first (rescored with the originals, which stay on disk), no HNSW graph.

    Measured by `make bench-scale` at 100k real contributions (a 40k tenant): the dense top 300
    in 7.5 ms p50 against 15.5 ms exact, recall 0.9996. A per-tenant HNSW (payload_m=16) gave
    2.0 ms but took 80 s to build at 100k, with the GIL held (DESIGN.md: not finished at 1M in
    54 min), so none is built. Loading an older shard with this config keeps its points.
    """
    quantized = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, memory=Memory.Cached)
    return EdgeConfig(
        vectors={
            DENSE: EdgeVectorParams(
                size=dimensions, distance=Distance.Cosine, quantization_config=quantized, memory=Memory.Cold
            )
        },
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf, memory=Memory.Cold)},
        payload_memory=Memory.Cold,
        hnsw_config=HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0),
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
    """Rewrite the shard's segments as `shard_config` says (int8 copies, originals on disk); True if any changed.

    Offline only, with the matcher stopped: Edge's optimize holds the GIL for the whole build
    (38-64 s per 100k contributions here), which would freeze a serving event loop. The shard's
    lock makes it fail with ShardLocked while a matcher holds the shard.
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
