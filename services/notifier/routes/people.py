"""`/v1/people/{id}/preferences`: a person's say in being invited (opt-out, snooze, personal caps)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.notifier.routes import DatabaseDep, NowDep, TenantDep
from services.notifier.store import people
from shared.errors import error_responses
from shared.fields import Instant, text_field

router = APIRouter(prefix="/v1/people", tags=["people"], responses=error_responses(401, 422))

PersonId = Annotated[text_field(min_length=1, max_length=200), Path()]
# A cap above these is no cap; they keep the numbers inside any database's INTEGER.
MAX_PER_DAY = 1_000
MAX_PER_WEEK = 7_000


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opted_out: bool = False
    snoozed_until: Instant | None = None
    max_per_day: int | None = Field(default=None, ge=0, le=MAX_PER_DAY, description="None: the tenant's policy")
    max_per_week: int | None = Field(default=None, ge=0, le=MAX_PER_WEEK, description="None: the tenant's policy")


class PreferencesOut(PreferencesIn):
    person_id: str
    updated_at: datetime | None = None


@router.get("/{person_id}/preferences")
async def get_preferences(person_id: PersonId, tenant: TenantDep, db: DatabaseDep) -> PreferencesOut:
    found = await people.get_preferences(db, tenant=tenant, person_id=person_id)
    if found is None:
        return PreferencesOut(person_id=person_id)
    return PreferencesOut(
        person_id=person_id,
        opted_out=found.opted_out,
        snoozed_until=found.snoozed_until,
        max_per_day=found.max_per_day,
        max_per_week=found.max_per_week,
        updated_at=found.updated_at,
    )


@router.put("/{person_id}/preferences")
async def put_preferences(
    person_id: PersonId, body: PreferencesIn, tenant: TenantDep, db: DatabaseDep, now: NowDep
) -> PreferencesOut:
    saved = await people.put_preferences(db, tenant=tenant, person_id=person_id, now=now, **body.model_dump())
    return PreferencesOut(person_id=person_id, updated_at=saved.updated_at, **body.model_dump())
