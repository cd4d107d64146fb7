"""A clock the test moves by hand: `clock.now` is what the code under test sees."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ManualClock(Generic[T]):
    """Callable like `datetime.now(UTC)` or `time.monotonic`, answering `now` until the test changes it."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
