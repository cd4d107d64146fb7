"""The Qdrant filters the QdrantServerIndex builds: a tenant's posts, as of an instant, by author, kind, tag."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from qdrant_client import models

from services.matcher.index.payload import epoch_seconds
from shared.events import PostKind


def any_of(key: str, values: Sequence[str]) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))


def created_between(after: datetime | None, before: datetime | None) -> list[models.Condition]:
    if after is None and before is None:
        return []
    gte = epoch_seconds(after) if after is not None else None
    lt = epoch_seconds(before) if before is not None else None
    return [models.FieldCondition(key="created_ts", range=models.Range(gte=gte, lt=lt))]


def search_filter(
    tenant: str,
    audiences: Sequence[str] | None,
    exclude_authors: Sequence[str],
    exclude_threads: Sequence[str],
    before: datetime | None = None,
) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
        *created_between(None, before),
    ]
    if audiences is not None:
        must.append(any_of("audience", audiences))
    must_not: list[models.Condition] = []
    if exclude_authors:
        must_not.append(any_of("author_id", exclude_authors))
    if exclude_threads:
        must_not.append(any_of("thread_id", exclude_threads))
    return models.Filter(must=must, must_not=must_not or None)


def count_filter(
    tenant: str,
    *,
    kinds: Sequence[PostKind] | None = None,
    tags_any: Sequence[str] | None = None,
    accepted: bool | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    authors: Sequence[str] | None = None,
) -> models.Filter:
    must: list[models.Condition] = [
        models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
        *created_between(after, before),
    ]
    if kinds is not None:
        must.append(any_of("kind", [PostKind(k).value for k in kinds]))
    if tags_any is not None:
        must.append(any_of("tags", tags_any))
    if authors is not None:
        must.append(any_of("author_id", authors))
    if accepted is not None:
        must.append(models.FieldCondition(key="accepted", match=models.MatchValue(value=accepted)))
    return models.Filter(must=must)


def matching(tenant: str, **fields: str) -> models.Filter:
    conditions: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in {"tenant": tenant, **fields}.items()
    ]
    return models.Filter(must=conditions)
