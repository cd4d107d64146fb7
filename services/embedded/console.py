"""One place that writes to the terminal, so lines from children and the runner never interleave."""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()


def say(message: str, *, source: str = "run") -> None:
    """Print one or more lines under a fixed-width source label."""
    with _lock:
        for line in message.splitlines() or [""]:
            sys.stdout.write(f"{source:>9} | {line}\n")
        sys.stdout.flush()
