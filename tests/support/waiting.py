"""Waiting for a condition with a deadline: tests never sleep a fixed time and hope."""

from __future__ import annotations

import asyncio
import time


async def until(condition, timeout: float = 30.0, what: str = "condition", *, poll: float = 0.05):
    """Await `condition()` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        await asyncio.sleep(poll)
    return result
