"""People as the invite policy sees them: their preferences and their recent invitations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifier.models import Invitation, PersonPreferences
from services.notifier.policy import Person
from services.notifier.store.database import Database


async def get_preferences(db: Database, *, tenant: str, person_id: str) -> PersonPreferences | None:
    async with db.sessions() as session:
        return await session.get(PersonPreferences, (tenant, person_id))


async def put_preferences(
    db: Database,
    *,
    tenant: str,
    person_id: str,
    opted_out: bool,
    snoozed_until: datetime | None,
    max_per_day: int | None,
    max_per_week: int | None,
    now: datetime,
) -> PersonPreferences:
    """Replace a person's preferences (created on first use)."""
    async with db.transaction() as session:
        found = await session.get(PersonPreferences, (tenant, person_id), with_for_update=True)
        if found is None:
            found = PersonPreferences(tenant=tenant, person_id=person_id)
            session.add(found)
        found.opted_out, found.snoozed_until = opted_out, snoozed_until
        found.max_per_day, found.max_per_week, found.updated_at = max_per_day, max_per_week, now
    return found


async def load_people(
    session: AsyncSession, *, tenant: str, person_ids: Collection[str], now: datetime
) -> dict[str, Person]:
    """Preferences, last week's invitations and the last invitation of each of these people.

    It first locks each person (see `lock_people`), so two replicas inviting one person to
    different threads at once take turns, and the second sees the first's invitation when it
    checks the caps.
    """
    ids = sorted(set(person_ids))
    if not ids:
        return {}
    await lock_people(session, tenant=tenant, person_ids=ids)
    prefs = {
        p.person_id: p
        for p in await session.scalars(
            sa.select(PersonPreferences).where(PersonPreferences.tenant == tenant, PersonPreferences.person_id.in_(ids))
        )
    }
    of_tenant = sa.and_(Invitation.tenant == tenant, Invitation.person_id.in_(ids))
    recent: dict[str, list[datetime]] = defaultdict(list)
    week = await session.execute(
        sa.select(Invitation.person_id, Invitation.created_at).where(
            of_tenant, Invitation.created_at > now - timedelta(days=7)
        )
    )
    for person_id, created_at in week:
        recent[person_id].append(created_at)
    last = dict(
        (
            await session.execute(
                sa.select(Invitation.person_id, sa.func.max(Invitation.created_at))
                .where(of_tenant)
                .group_by(Invitation.person_id)
            )
        ).all()
    )
    return {person_id: _person(prefs.get(person_id), recent[person_id], last.get(person_id)) for person_id in ids}


async def lock_people(session: AsyncSession, *, tenant: str, person_ids: Collection[str]) -> None:
    """On PostgreSQL, hold these people until the transaction ends: whoever invites or erases one
    of them meanwhile waits. (SQLite serialises writers by itself: the embedded default is one
    process.)"""
    if session.bind.dialect.name != "postgresql":
        return
    # One transaction-scoped advisory lock per person, always taken in the same (sorted) order, so
    # two transactions wanting the same people never deadlock; taking one again is free.
    for person_id in sorted(set(person_ids)):
        await session.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"person/{tenant}/{person_id}"}
        )


def _person(prefs: PersonPreferences | None, recent: list[datetime], last: datetime | None) -> Person:
    if prefs is None:
        return Person(invited_at=tuple(recent), last_invited_at=last)
    return Person(
        opted_out=prefs.opted_out,
        snoozed_until=prefs.snoozed_until,
        max_per_day=prefs.max_per_day,
        max_per_week=prefs.max_per_week,
        invited_at=tuple(recent),
        last_invited_at=last,
    )
