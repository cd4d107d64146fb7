"""A question as the ranking sees it: its text, vector, tags and moment, and who may not be a candidate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# Timestamps are compared to the second: what was stored in the question's own second was there.
_SAME_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class QuestionQuery:
    """A question as the ranking sees it, at the moment it was asked."""

    tenant: str
    vector: Sequence[float]
    text: str
    tags: tuple[str, ...]
    now: datetime
    audiences: Sequence[str] | None = None
    exclude_authors: Sequence[str] = ()
    exclude_threads: Sequence[str] = ()

    @property
    def day(self) -> datetime:
        """The start of the question's day (UTC): the as-of instant of its counts."""
        moment = self.now.astimezone(UTC)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def before(self) -> datetime:
        """The index's as-of bound: the question's own thread is excluded, so nothing of it leaks."""
        return self.now + _SAME_SECOND
