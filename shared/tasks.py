"""Background tasks that say so when they die, instead of vanishing with their exception."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

log = logging.getLogger(__name__)


def start_task(coro: Coroutine, *, name: str) -> asyncio.Task:
    """`asyncio.create_task`, with a crash logged (and shown by the health check that watches it)."""
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_crash)
    return task


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s stopped: %r", task.get_name(), task.exception(), exc_info=task.exception())
