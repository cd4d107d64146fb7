"""When a webhook delivery is tried again: the retry schedule and the receiver's Retry-After."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# Only these answers ask the sender to come back later (RFC 9110 §10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_schedule(raw: str) -> tuple[float, ...]:
    """`"5,300,1800"` -> (5.0, 300.0, 1800.0): seconds to wait before each retry."""
    delays: list[float] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            delay = float(item)
        except ValueError:
            raise ValueError(f"NOTIFIER_RETRY_SCHEDULE: {item!r} is not a number of seconds") from None
        if delay < 0 or delay != delay:
            raise ValueError(f"NOTIFIER_RETRY_SCHEDULE: {item!r} is not a delay of zero or more seconds")
        delays.append(delay)
    return tuple(delays)


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (delay-seconds or an HTTP date) as a delay from now; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def next_attempt_at(
    *,
    attempts: int,
    now: datetime,
    schedule: Sequence[float],
    status: int | None = None,
    retry_after: str | None = None,
) -> datetime | None:
    """When to try again after `attempts` failed attempts; None once the schedule is exhausted."""
    if attempts < 1:
        raise ValueError("attempts counts the attempts made, so it is at least 1")
    if attempts > len(schedule):
        return None
    delay = timedelta(seconds=schedule[attempts - 1])
    if status in RETRY_AFTER_STATUSES:
        asked = parse_retry_after(retry_after, now)
        if asked is not None:
            delay = max(delay, asked)
    return now + delay
