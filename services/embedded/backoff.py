"""How long the supervisor waits before restarting what died: doubling delays, forgotten after a good run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`first`, twice that, four times ... at most `cap` seconds; back to `first` once a run lasted `stable_after`.

    A process that crashes the moment it starts is retried ever more slowly instead of spinning
    the CPU; one that ran for a good while and then crashed is restarted at once, as if new.
    """

    first: float = 1.0
    cap: float = 30.0
    stable_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failures: int = field(default=0, init=False)
    _started_at: float | None = field(default=None, init=False)

    def started(self) -> None:
        """The process has just been (re)started."""
        self._started_at = self.clock()

    def delay(self) -> float:
        """The process has just exited unasked: seconds to wait before starting it again."""
        if self._started_at is not None and self.clock() - self._started_at >= self.stable_after:
            self._failures = 0
        self._started_at = None
        delay = min(self.cap, self.first * 2**self._failures)
        self._failures = min(self._failures + 1, 64)  # far past any cap; keeps 2**n a float
        return delay
