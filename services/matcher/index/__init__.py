"""The matcher's vector index: the ExpertIndex Protocol, its two adapters and `open_index()`."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import AsyncQdrantClient

from services.matcher.index.base import (
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
from services.matcher.index.edge import EdgeIndex
from services.matcher.index.edge_shard import ShardLocked
from services.matcher.index.server import DEFAULT_COLLECTION, QdrantServerIndex

__all__ = [
    "AcceptedQuestion",
    "Contribution",
    "EdgeIndex",
    "ExpertIndex",
    "Feedback",
    "FeedbackHit",
    "Hit",
    "IndexUnavailable",
    "QdrantServerIndex",
    "ShardLocked",
    "ThreadInfo",
    "open_index",
    "point_id",
]

# Seconds a Qdrant server call may take before it counts as unavailable.
_SERVER_TIMEOUT = 10


async def open_index(
    *, qdrant_url: str | None, edge_path: Path, collection: str = DEFAULT_COLLECTION
) -> ExpertIndex:
    """The Qdrant server's collection when a URL is given, else the Edge shard at `edge_path`."""
    if qdrant_url:
        client = AsyncQdrantClient(url=qdrant_url, timeout=_SERVER_TIMEOUT)
        try:
            return await QdrantServerIndex.open(client, collection)
        except BaseException:
            await client.close()
            raise
    # One shard is one collection: `collection` names only the server's.
    return await EdgeIndex.open(Path(edge_path))
