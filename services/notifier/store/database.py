"""The engine, its sessions and the Alembic migrations run at startup (SQLite or PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
# Any constant works: it only has to be the same for every replica migrating this database.
_MIGRATION_LOCK = 7_301_204


def new_id(prefix: str) -> str:
    """`sub_…`, `inv_…`, `msg_…`: ids that say what they name."""
    return f"{prefix}_{uuid.uuid4().hex}"


class Database:
    """One engine per process; sessions are short and each is one transaction."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        options: dict = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # Waits for a concurrent writer instead of failing at once with "database is locked".
            options["connect_args"] = {"timeout": 15}
        self.engine = create_async_engine(url, **options)
        if parsed.get_backend_name() == "sqlite":
            sa.event.listen(self.engine.sync_engine, "connect", _write_ahead_log)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on any error."""
        async with self.sessions() as session, session.begin():
            yield session

    async def write_lock(self, session: AsyncSession) -> None:
        """On SQLite, take the database's write lock now, before reading what is to be claimed.

        PostgreSQL claims with SELECT ... FOR UPDATE SKIP LOCKED; SQLite has no row locks, and two
        claimers (two processes, or a burst beside the running loop) could otherwise read the same
        rows before either writes. An UPDATE that matches nothing still takes the lock.
        """
        if not self.is_postgres:
            await session.execute(sa.text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; replicas starting together take turns."""
        async with self.engine.begin() as connection:
            if self.is_postgres:
                await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            await connection.run_sync(_upgrade)

    async def ping(self) -> bool:
        """Readiness: the database answers a query."""
        async with self.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
        return True

    async def close(self) -> None:
        await self.engine.dispose()


def _write_ahead_log(connection, _record) -> None:
    """SQLite in WAL mode, every commit still synced (FULL): as durable as the default rollback
    journal, with one sync per commit instead of several, and readers never blocked by a writer.
    Measured here with 300 small transactions: 173-194 commits/s with the rollback journal,
    473-1358 with WAL. (An in-memory database keeps its own journal.)"""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _upgrade(connection: sa.Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
