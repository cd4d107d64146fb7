"""The notifier's background workers share one loop: do what is due, then sleep until woken or polled."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class Poller:
    """Runs `burst()` every `poll_interval` seconds, or at once when woken, until stopped.

    Subclasses implement `burst()`; tests await it directly instead of waiting for the loop.
    """

    def __init__(self, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # A burst asked for (tests, a route) never overlaps the one `run` is doing.
        self._busy = asyncio.Lock()

    async def burst(self) -> int:
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """True while a burst runs."""
        return self._busy.locked()

    def wake(self) -> None:
        """New work is waiting: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the work in hand and return from `run`."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.burst()
            except Exception:
                # The work stays in the database (claims expire): the next round picks it up.
                log.exception("%s round failed; retrying in %.1fs", type(self).__name__, self._poll_interval)
            with contextlib.suppress(TimeoutError):  # woken early, or the interval is over
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
