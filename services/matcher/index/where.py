"""The index's filters as one neutral value, `Where`, which each engine translates to its client's.

Conditions name payload fields (see payload.py); the builders below are the filters the index
uses: a tenant's posts, as of an instant, by author, kind, tag, accepted flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.matcher.index.payload import epoch_seconds
from shared.events import PostKind


@dataclass(frozen=True, slots=True)
class Is:
    """The field equals `value` (for a list field: one of its items does)."""

    key: str
    value: str | bool


@dataclass(frozen=True, slots=True)
class AnyOf:
    """The field equals one of `values`."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Between:
    """The numeric field lies in [`gte`, `lt`); None is no bound."""

    key: str
    gte: float | None = None
    lt: float | None = None


Condition = Is | AnyOf | Between


@dataclass(frozen=True, slots=True)
class Where:
    """Points matching every `must` condition and none of the `must_not` ones."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()

    def also(self, *conditions: Condition) -> Where:
        return Where(must=(*self.must, *conditions), must_not=self.must_not)


def any_of(key: str, values: Sequence[str]) -> AnyOf:
    return AnyOf(key, tuple(values))


def kinds_of(kinds: Sequence[PostKind]) -> AnyOf:
    return any_of("kind", [PostKind(k).value for k in kinds])


def created_between(after: datetime | None, before: datetime | None) -> tuple[Condition, ...]:
    if after is None and before is None:
        return ()
    gte = epoch_seconds(after) if after is not None else None
    lt = epoch_seconds(before) if before is not None else None
    return (Between("created_ts", gte=gte, lt=lt),)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which of a tenant's contributions a search may see: by audience, author, thread and time.

    `audiences`: visible to one of these (None: any); `before`: created strictly before (to the second).
    """

    audiences: Sequence[str] | None = None
    exclude_authors: Sequence[str] = ()
    exclude_threads: Sequence[str] = ()
    before: datetime | None = None

    def where(self, tenant: str) -> Where:
        """The tenant's contributions in this scope."""
        must: list[Condition] = [Is("tenant", tenant), *created_between(None, self.before)]
        if self.audiences is not None:
            must.append(any_of("audience", self.audiences))
        must_not: list[Condition] = []
        if self.exclude_authors:
            must_not.append(any_of("author_id", self.exclude_authors))
        if self.exclude_threads:
            must_not.append(any_of("thread_id", self.exclude_threads))
        return Where(must=tuple(must), must_not=tuple(must_not))


def count_where(
    tenant: str,
    *,
    kinds: Sequence[PostKind] | None = None,
    tags_any: Sequence[str] | None = None,
    accepted: bool | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    authors: Sequence[str] | None = None,
) -> Where:
    """A tenant's contributions by kind, tag, accepted flag, creation time and author (None: any)."""
    must: list[Condition] = [Is("tenant", tenant), *created_between(after, before)]
    if kinds is not None:
        must.append(kinds_of(kinds))
    if tags_any is not None:
        must.append(any_of("tags", tags_any))
    if authors is not None:
        must.append(any_of("author_id", authors))
    if accepted is not None:
        must.append(Is("accepted", accepted))
    return Where(must=tuple(must))


def matching(tenant: str, **fields: str) -> Where:
    """A tenant's points whose fields equal these values."""
    return Where(must=tuple(Is(key, value) for key, value in {"tenant": tenant, **fields}.items()))
