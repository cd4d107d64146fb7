"""Opening a Qdrant Edge shard (its config and payload indexes), and Edge's errors as ours."""

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
    IntegerIndexParams,
    KeywordIndexParams,
    Modifier,
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
    return EdgeConfig(
        vectors={DENSE: EdgeVectorParams(size=dimensions, distance=Distance.Cosine)},
        sparse_vectors={SPARSE: EdgeSparseVectorParams(modifier=Modifier.Idf)},
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


def translate(exc: Exception) -> Exception:
    """Edge's bare Exception as a ValueError (bad request) or IndexUnavailable (the rest)."""
    message = str(exc)
    if isinstance(exc, (ValueError, TypeError)) or message.startswith(_BAD_INPUT):
        return ValueError(message)
    return IndexUnavailable(f"Qdrant Edge failed: {message}")
