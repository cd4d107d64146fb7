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

PersonId = Annotated[
    text_field(min_length=1, max_length=200),
    Path(description="The person, as the posts' `author_id` names them (1-200 characters)."),
]
# A cap above these is no cap; they keep the numbers inside any database's INTEGER.
MAX_PER_DAY = 1_000
MAX_PER_WEEK = 7_000


class PreferencesIn(BaseModel):
    """A person's say in being invited; all four fields are set at once, one left out goes back to its default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"snoozed_until": "2025-05-16T00:00:00Z", "max_per_day": 1}]},
    )

    opted_out: bool = Field(default=False, description="`true`: never invited.", examples=[False])
    snoozed_until: Instant | None = Field(
        default=None,
        description="Not invited before this time, ISO 8601 with an offset (without one: 422); `null`: not snoozed.",
        examples=["2025-05-16T00:00:00Z"],
    )
    max_per_day: int | None = Field(
        default=None, ge=0, le=MAX_PER_DAY, examples=[1],
        description="Invitations in any 24 hours, 0-1,000 (0: never invited), in place of the tenant's cap; "
        "`null`: the tenant's (`NOTIFIER_MAX_INVITES_PER_DAY`).",
    )
    max_per_week: int | None = Field(
        default=None, ge=0, le=MAX_PER_WEEK, examples=[None],
        description="Invitations in any 7 days, 0-7,000 (0: never invited), in place of the tenant's cap; "
        "`null`: the tenant's (`NOTIFIER_MAX_INVITES_PER_WEEK`).",
    )


class PreferencesOut(PreferencesIn):
    """A person's preferences as stored; the defaults for a person never set."""

    person_id: str = Field(description="The person.", examples=["u-dan"])
    updated_at: datetime | None = Field(default=None, description="When they were last set; `null`: never.",
                                        examples=["2025-05-02T10:12:00Z"])


@router.get("/{person_id}/preferences", summary="Get a person's preferences")
async def get_preferences(person_id: PersonId, tenant: TenantDep, db: DatabaseDep) -> PreferencesOut:
    """A person's say in being invited; a person never set gets the defaults and `updated_at: null`."""
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


@router.put("/{person_id}/preferences", summary="Set a person's preferences")
async def put_preferences(
    person_id: PersonId, body: PreferencesIn, tenant: TenantDep, db: DatabaseDep, now: NowDep
) -> PreferencesOut:
    """Replace all four fields (one left out goes back to its default); they count from the next decision,
    and invitations already made stay."""
    saved = await people.put_preferences(db, tenant=tenant, person_id=person_id, now=now, **body.model_dump())
    return PreferencesOut(person_id=person_id, updated_at=saved.updated_at, **body.model_dump())
