"""Who is invited to a thread: the invite policy as plain functions, no I/O.

Best candidates first; never the asker, a participant or someone already invited; never anyone
whose answers are not close enough to the question (a score earned by volume alone invites nobody),
or who called questions like it not their area;
never anyone opted out, snoozed or over their cap; among close scores, whoever was invited least
recently.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events import Candidate, PostKind

_NEVER = datetime.min.replace(tzinfo=UTC)
# The least cosine similarity to the question of an invitee's closest answer (or of the question of
# a thread they answered): asking or commenting near a question is not knowing its answer. Chosen
# on the four replays (`expertmatch eval` prints the table): at 0.35 the invitations it drops were
# answered 5.0-12.7% of the time against 10.1-22.3% for those it keeps; at 0.40 beer lost 9 of its
# 43 points of Hit@3, and at 0.30 the dropped answered as often as the kept there.
MIN_SIMILARITY = 0.35


@dataclass(frozen=True, slots=True)
class InvitePolicy:
    """How many to invite at first and in all, personal caps, load spreading and escalation."""

    initial: int = 3
    total: int = 6
    per_day: int = 3
    per_week: int = 10
    # Scores within this fraction of each other count as close: spread the load among them.
    spread_margin: float = 0.05
    escalation_delay: timedelta = timedelta(hours=4)
    min_similarity: float = MIN_SIMILARITY


class PolicyOverride(BaseModel):
    """A tenant's changes to the default policy, as NOTIFIER_TENANT_POLICIES gives them."""

    model_config = ConfigDict(extra="forbid")

    initial: int | None = Field(default=None, ge=1)
    total: int | None = Field(default=None, ge=1)
    per_day: int | None = Field(default=None, ge=0)
    per_week: int | None = Field(default=None, ge=0)
    spread_margin: float | None = Field(default=None, ge=0, le=1)
    escalation_delay: float | None = Field(default=None, ge=0, description="seconds")
    min_similarity: float | None = Field(default=None, ge=-1, le=1)


def parse_tenant_policies(raw: str) -> dict[str, PolicyOverride]:
    """`{"acme": {"initial": 2, "escalation_delay": 3600}}` -> overrides per tenant."""
    try:
        doc = json.loads(raw or "{}")
        if not isinstance(doc, dict):
            raise ValueError("must be a JSON object of tenant -> policy")
        return {tenant: PolicyOverride.model_validate(value) for tenant, value in doc.items()}
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"NOTIFIER_TENANT_POLICIES: {exc}") from None


@dataclass(frozen=True, slots=True)
class Policies:
    default: InvitePolicy
    overrides: Mapping[str, PolicyOverride]

    def for_tenant(self, tenant: str) -> InvitePolicy:
        override = self.overrides.get(tenant)
        if override is None:
            return self.default
        changes = override.model_dump(exclude_none=True)
        if "escalation_delay" in changes:
            changes["escalation_delay"] = timedelta(seconds=changes["escalation_delay"])
        return replace(self.default, **changes)


@dataclass(frozen=True, slots=True)
class Person:
    """What the policy knows of a candidate: their preferences and recent invitations."""

    opted_out: bool = False
    snoozed_until: datetime | None = None
    max_per_day: int | None = None
    max_per_week: int | None = None
    invited_at: tuple[datetime, ...] = ()  # their invitations of the last week
    last_invited_at: datetime | None = None


class SkipReason(StrEnum):
    ASKER = "asker"
    PARTICIPANT = "participant"
    ALREADY_INVITED = "already_invited"
    NOT_CLOSE_ENOUGH = "not_close_enough"
    NOT_MY_AREA = "not_my_area"
    OPTED_OUT = "opted_out"
    SNOOZED = "snoozed"
    DAILY_CAP = "daily_cap"
    WEEKLY_CAP = "weekly_cap"


class Closed(StrEnum):
    """Why a thread's escalation is over."""

    ACCEPTED_ANSWER = "accepted_answer"
    INVITEE_REPLIED = "invitee_replied"
    LIMIT_REACHED = "limit_reached"
    NO_CANDIDATES = "no_candidates"
    NO_ONE_CLOSE_ENOUGH = "no_one_close_enough"


@dataclass(frozen=True, slots=True)
class Skip:
    candidate: Candidate
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class Plan:
    """Whom to invite now, in order, and which better-ranked candidates were passed over, and why."""

    invite: list[Candidate]
    skipped: list[Skip]


def skip_reason(
    candidate: Candidate,
    person: Person,
    *,
    policy: InvitePolicy,
    now: datetime,
    asker: str,
    participants: Collection[str],
    already_invited: Collection[str],
) -> SkipReason | None:
    """Why this candidate may not be invited now; None if they may."""
    who = candidate.person_id
    if who == asker:
        return SkipReason.ASKER
    if who in participants:
        return SkipReason.PARTICIPANT
    if who in already_invited:
        return SkipReason.ALREADY_INVITED
    if closeness(candidate) < policy.min_similarity:
        return SkipReason.NOT_CLOSE_ENOUGH
    record = candidate.track_record
    if record is not None and record.not_my_area_nearby > record.answered_nearby:
        # They called questions like this one not their area more often than they answered them:
        # ranked last is not enough when nobody else is close enough to take their place.
        return SkipReason.NOT_MY_AREA
    if person.opted_out:
        return SkipReason.OPTED_OUT
    if person.snoozed_until is not None and person.snoozed_until > now:
        return SkipReason.SNOOZED
    per_day = policy.per_day if person.max_per_day is None else person.max_per_day
    if sum(1 for at in person.invited_at if at > now - timedelta(days=1)) >= per_day:
        return SkipReason.DAILY_CAP
    per_week = policy.per_week if person.max_per_week is None else person.max_per_week
    if sum(1 for at in person.invited_at if at > now - timedelta(days=7)) >= per_week:
        return SkipReason.WEEKLY_CAP
    return None


def closeness(candidate: Candidate) -> float:
    """How close the candidate's closest answer is to the question (cosine), as the matcher measured it.

    From a matcher older than `Candidate.closeness`: their closest answer among the evidence; 0 without one.
    """
    if candidate.closeness is not None:
        return candidate.closeness
    return max((e.similarity for e in candidate.evidence if e.kind is PostKind.ANSWER), default=0.0)


def nobody_close_enough(candidates: Iterable[Candidate], invited: Collection[str], policy: InvitePolicy) -> bool:
    """True when there are candidates not yet invited, and every one of them falls below the similarity floor."""
    left = [c for c in candidates if c.person_id not in invited]
    return bool(left) and all(closeness(c) < policy.min_similarity for c in left)


def spread(candidates: Iterable[Candidate], people: Mapping[str, Person], margin: float) -> list[Candidate]:
    """Best first, but within each run of close scores, the least recently invited first."""
    ordered = sorted(candidates, key=lambda c: c.score, reverse=True)
    result: list[Candidate] = []
    while ordered:
        floor = ordered[0].score - abs(ordered[0].score) * margin
        close = [c for c in ordered if c.score >= floor]
        ordered = ordered[len(close):]
        close.sort(key=lambda c: (_last_invited(people, c.person_id), -c.score))
        result += close
    return result


def _last_invited(people: Mapping[str, Person], person_id: str) -> datetime:
    person = people.get(person_id)
    return (person.last_invited_at if person else None) or _NEVER


def plan_invitations(
    candidates: Iterable[Candidate],
    *,
    room: int,
    policy: InvitePolicy,
    now: datetime,
    people: Mapping[str, Person],
    asker: str,
    participants: Collection[str] = (),
    already_invited: Collection[str] = (),
) -> Plan:
    """Up to `room` invitees, and the skips ranked at or above the last of them."""
    eligible, skipped, seen = [], [], set()
    for candidate in sorted(candidates, key=lambda c: c.score, reverse=True):
        if candidate.person_id in seen:
            continue  # a person listed twice counts with their best score
        seen.add(candidate.person_id)
        reason = skip_reason(
            candidate,
            people.get(candidate.person_id, Person()),
            policy=policy,
            now=now,
            asker=asker,
            participants=participants,
            already_invited=already_invited,
        )
        if reason is None:
            eligible.append(candidate)
        else:
            skipped.append(Skip(candidate, reason))
    invite = spread(eligible, people, policy.spread_margin)[: max(room, 0)]
    if invite and len(invite) == room:
        lowest = min(c.score for c in invite)
        skipped = [s for s in skipped if s.candidate.score >= lowest]
    return Plan(invite, skipped)
