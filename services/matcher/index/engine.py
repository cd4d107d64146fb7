"""What QdrantIndex needs of a Qdrant client: a few primitives over neutral points and filters.

Two engines implement it: `EdgeEngine` (edge.py, Qdrant Edge in-process) and `ServerEngine`
(server.py, a Qdrant server through AsyncQdrantClient). Each maps its client's errors to ours:
a bad request is a ValueError, anything else that fails is IndexUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.matcher.index.where import Where


@dataclass(frozen=True, slots=True)
class Sparse:
    """A sparse vector: sorted indices and their values."""

    indices: list[int]
    values: list[float]


@dataclass(frozen=True, slots=True)
class Point:
    """A point to write: its id, its dense vector, an optional sparse one and its payload."""

    id: str
    dense: list[float]
    payload: dict[str, Any]
    sparse: Sparse | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """A point read back: its payload, its score (0 when not from a query), its dense vector if asked, its id."""

    payload: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    dense: list[float] | None = None
    id: str = ""


@dataclass(frozen=True, slots=True)
class Nearest:
    """The `limit` points matching `where` nearest to `vector` in the named vector `using`.

    `idf_where`: for a sparse query, the points whose statistics weight its terms (IDF);
    `fields`: the payload fields to return (True: all, False: none, the points' ids only).
    """

    vector: list[float] | Sparse
    using: str
    where: Where
    limit: int
    idf_where: Where | None = None
    fields: Sequence[str] | bool = True


class Engine(Protocol):
    async def upsert(self, points: Sequence[Point]) -> None: ...

    async def delete_ids(self, ids: Sequence[str]) -> None: ...

    async def delete_where(self, where: Where) -> int:
        """Delete the points matching `where`; returns how many there were."""
        ...

    async def retrieve_dense(self, point_id: str) -> list[float] | None: ...

    async def retrieve(self, point_ids: Sequence[str], fields: Sequence[str]) -> list[Record]:
        """The points of these ids that exist, with these payload fields."""
        ...

    async def query(self, nearest: Nearest) -> list[Record]: ...

    async def query_batch(self, queries: Sequence[Nearest]) -> list[list[Record]]: ...

    async def scroll(self, where: Where, fields: Sequence[str] | bool, *, dense: bool = False) -> list[Record]:
        """Every point matching `where` (these payload fields, and the dense vector if asked)."""
        ...

    async def latest(self, where: Where, fields: Sequence[str], limit: int) -> list[Record]:
        """The latest `limit` points matching `where` by `created_ts`, newest first: payloads only, no ids."""
        ...

    async def facet(self, key: str, where: Where, limit: int) -> dict[str, int]: ...

    async def count(self, where: Where) -> int: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
