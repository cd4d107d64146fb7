"""The broker's epoch: a number its owner rewrites each time it starts a broker that kept nothing.

The embedded broker (Tansu, in memory) loses its topics, records and committed offsets when it
dies. Its owner, the embedded supervisor, restarts it, re-creates the topics and only then writes
the next epoch to this file (`KAFKA_EPOCH_FILE`). Producers that see the number change resend
what their outbox still holds; consumers go back to the start of the new, empty log.

Apache Kafka keeps its log on disk: no epoch file, no outbox.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_epoch(path: Path) -> int | None:
    """The epoch in the file, or None while there is none yet (the broker is still starting)."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_epoch(path: Path, epoch: int) -> None:
    """Replace the file in one step, so a reader never sees half a number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(f"{epoch}\n")
    os.replace(scratch, path)


def next_epoch(path: Path) -> int:
    """One more than the file holds (1 for a file that does not exist yet)."""
    return (read_epoch(path) or 0) + 1
