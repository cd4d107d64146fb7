"""The matcher's vector index: the ExpertIndex Protocol, its value types and `open_index()`.

The adapters (and qdrant_client, qdrant_edge under them) are imported on first use, so modules
that only need the value types, such as ranking, stay cheap to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.matcher.index.base import (
    DEFAULT_COLLECTION,
    AcceptedQuestion,
    Contribution,
    ExpertIndex,
    Feedback,
    FeedbackHit,
    Hit,
    IndexUnavailable,
    ThreadInfo,
    point_id,
)

if TYPE_CHECKING:
    from services.matcher.index.edge import EdgeIndex
    from services.matcher.index.edge_shard import ShardLocked
    from services.matcher.index.qdrant import QdrantIndex
    from services.matcher.index.server import QdrantServerIndex

__all__ = [
    "AcceptedQuestion",
    "Contribution",
    "DEFAULT_COLLECTION",
    "EdgeIndex",
    "ExpertIndex",
    "Feedback",
    "FeedbackHit",
    "Hit",
    "IndexUnavailable",
    "QdrantIndex",
    "QdrantServerIndex",
    "ShardLocked",
    "ThreadInfo",
    "open_index",
    "point_id",
]

# Where each lazily imported name lives.
_LAZY = {
    "EdgeIndex": "services.matcher.index.edge",
    "ShardLocked": "services.matcher.index.edge_shard",
    "QdrantIndex": "services.matcher.index.qdrant",
    "QdrantServerIndex": "services.matcher.index.server",
}

# Seconds a Qdrant server call may take before it counts as unavailable.
_SERVER_TIMEOUT = 10


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


async def open_index(*, qdrant_url: str | None, edge_path: Path, collection: str = DEFAULT_COLLECTION) -> ExpertIndex:
    """The Qdrant server's collection when a URL is given, else the Edge shard at `edge_path`."""
    if qdrant_url:
        from qdrant_client import AsyncQdrantClient

        from services.matcher.index.server import QdrantServerIndex

        client = AsyncQdrantClient(url=qdrant_url, timeout=_SERVER_TIMEOUT)
        try:
            return await QdrantServerIndex.open(client, collection)
        except BaseException:
            await client.close()
            raise
    from services.matcher.index.edge import EdgeIndex

    # One shard is one collection: `collection` names only the server's.
    return await EdgeIndex.open(Path(edge_path))
