"""Counting a database's commits that wrote something: on SQLite (WAL, synchronous=FULL) each is a sync to disk."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

_WRITES = ("INSERT", "UPDATE", "DELETE")


class WriteCommits:
    """`count` is how many commits on `engine` followed a statement that changed a row, since it was made."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        self._engine = engine.sync_engine
        sa.event.listen(self._engine, "after_cursor_execute", self._executed)
        sa.event.listen(self._engine, "commit", self._committed)
        sa.event.listen(self._engine, "rollback", self._rolled_back)

    def close(self) -> None:
        sa.event.remove(self._engine, "after_cursor_execute", self._executed)
        sa.event.remove(self._engine, "commit", self._committed)
        sa.event.remove(self._engine, "rollback", self._rolled_back)

    def _executed(self, conn, cursor, statement, parameters, context, executemany) -> None:
        verb = statement.lstrip()[:6].upper()
        # An UPDATE that matches nothing (the SQLite write lock's) writes nothing.
        if verb in _WRITES and (verb == "INSERT" or cursor.rowcount != 0):
            conn.info["wrote"] = True

    def _committed(self, conn) -> None:
        if conn.info.pop("wrote", None):
            self.count += 1

    def _rolled_back(self, conn) -> None:
        conn.info.pop("wrote", None)
