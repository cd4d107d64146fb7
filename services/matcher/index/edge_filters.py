"""The Qdrant Edge filters the EdgeIndex builds: a tenant's posts, as of an instant, by author, kind, tag."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue, RangeFloat

from services.matcher.index.payload import ACCEPTED_FLAG, epoch_seconds
from shared.events import PostKind


def any_of(key: str, values: Sequence[str]) -> FieldCondition:
    return FieldCondition(key=key, match=MatchAny(list(values)))


def created_between(after: datetime | None, before: datetime | None) -> list[Any]:
    if after is None and before is None:
        return []
    gte = epoch_seconds(after) if after is not None else None
    lt = epoch_seconds(before) if before is not None else None
    return [FieldCondition(key="created_ts", range=RangeFloat(gte=gte, lt=lt))]


def search_filter(
    tenant: str,
    audiences: Sequence[str] | None,
    exclude_authors: Sequence[str],
    exclude_threads: Sequence[str],
    before: datetime | None = None,
) -> Filter:
    must: list[Any] = [FieldCondition(key="tenant", match=MatchValue(tenant)), *created_between(None, before)]
    if audiences is not None:
        must.append(any_of("audience", audiences))
    must_not: list[Any] = []
    if exclude_authors:
        must_not.append(any_of("author_id", exclude_authors))
    if exclude_threads:
        must_not.append(any_of("thread_id", exclude_threads))
    return Filter(must=must, must_not=must_not or None)


def count_filter(
    tenant: str,
    *,
    kinds: Sequence[PostKind] | None = None,
    tags_any: Sequence[str] | None = None,
    accepted: bool | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    authors: Sequence[str] | None = None,
) -> Filter:
    must: list[Any] = [FieldCondition(key="tenant", match=MatchValue(tenant)), *created_between(after, before)]
    must_not: list[Any] = []
    if kinds is not None:
        must.append(any_of("kind", [PostKind(k).value for k in kinds]))
    if tags_any is not None:
        must.append(any_of("tags", tags_any))
    if authors is not None:
        must.append(any_of("author_id", authors))
    if accepted is not None:
        # Not accepted = anything but flag 1, so points indexed before the flag existed count too.
        accepted_flag = FieldCondition(key=ACCEPTED_FLAG, match=MatchValue(1))
        (must if accepted else must_not).append(accepted_flag)
    return Filter(must=must, must_not=must_not or None)


def matching(tenant: str, **fields: str) -> Filter:
    conditions = [FieldCondition(key="tenant", match=MatchValue(tenant))]
    conditions += [FieldCondition(key=key, match=MatchValue(value)) for key, value in fields.items()]
    return Filter(must=conditions)
