"""Fixtures of the integration tier: the notifier's database, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest

from services.notifier.store import Database


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request, tmp_path):
    """A migrated notifier database, once on SQLite and once on PostgreSQL; a module adds its rows by overriding it."""
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/notifier.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    database = Database(url)
    await database.migrate()
    yield database
    await database.close()
