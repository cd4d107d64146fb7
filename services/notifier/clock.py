"""The notifier's idea of now: injected everywhere time decides (caps, retries, escalation, erasure)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)
