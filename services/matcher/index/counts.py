"""Per-author and per-tag counts for any adapter that can build a count filter and run a facet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.events import PostKind


class FacetCounts:
    """`author_counts` and `tag_counts` on top of an adapter's `_count_filter` and `_facet`."""

    _count_filter: Any  # the adapter's filter builder, as a staticmethod

    async def _facet(self, key: str, where: Any, limit: int) -> dict[str, int]:
        raise NotImplementedError

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
        where = self._count_filter(
            tenant, kinds=kinds, tags_any=tags_any, accepted=accepted, after=after, before=before, authors=authors
        )
        return await self._facet("author_id", where, limit)

    async def tag_counts(
        self,
        tenant: str,
        *,
        kinds: Sequence[PostKind] | None = None,
        before: datetime | None = None,
        limit: int = 10_000,
    ) -> dict[str, int]:
        """How many contributions (of `kinds`, created before `before`) carry each tag."""
        return await self._facet("tags", self._count_filter(tenant, kinds=kinds, before=before), limit)
