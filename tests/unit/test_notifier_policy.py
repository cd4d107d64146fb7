"""Who gets invited to a thread: the invite policy, with an injected clock."""

from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.policy import (
    InvitePolicy,
    Person,
    Policies,
    PolicyOverride,
    nobody_close_enough,
    parse_tenant_policies,
    plan_invitations,
)
from services.notifier.settings import NotifierSettings
from shared.events import Candidate, Evidence, PostKind, TrackRecord

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = InvitePolicy()


CLOSE = (Evidence(post_id="p1", thread_id="t0", kind=PostKind.ANSWER, snippet="s", similarity=0.8),)


def people(*pairs: tuple[str, float]) -> list[Candidate]:
    return [Candidate(person_id=person, score=score, evidence=CLOSE) for person, score in pairs]


def plan(candidates, *, room=3, policy=POLICY, known=None, asker="asker", participants=(), invited=()):
    return plan_invitations(
        candidates, room=room, policy=policy, now=NOW, people=known or {}, asker=asker,
        participants=participants, already_invited=invited,
    )


def ids(chosen) -> list[str]:
    return [c.person_id for c in chosen]


def skips(result) -> dict[str, str]:
    return {s.candidate.person_id: s.reason.value for s in result.skipped}


def test_best_candidates_first_up_to_the_room():
    result = plan(people(("ann", 0.2), ("bob", 0.9), ("cy", 0.5), ("dee", 0.7)))
    assert ids(result.invite) == ["bob", "dee", "cy"]
    assert result.skipped == []


def test_the_asker_participants_and_people_already_invited_are_skipped_with_their_reason():
    result = plan(
        people(("asker", 0.99), ("part", 0.95), ("old", 0.9), ("ann", 0.5)), participants={"part"}, invited={"old"}
    )
    assert ids(result.invite) == ["ann"]
    assert skips(result) == {"asker": "asker", "part": "participant", "old": "already_invited"}


def test_opted_out_and_snoozed_people_are_skipped_until_the_snooze_ends():
    known = {
        "ann": Person(opted_out=True),
        "bob": Person(snoozed_until=NOW + timedelta(hours=1)),
        "cy": Person(snoozed_until=NOW - timedelta(seconds=1)),
    }
    result = plan(people(("ann", 0.9), ("bob", 0.8), ("cy", 0.7), ("dee", 0.6)), known=known)
    assert ids(result.invite) == ["cy", "dee"]
    assert skips(result) == {"ann": "opted_out", "bob": "snoozed"}


def test_daily_and_weekly_caps_count_recent_invitations_only():
    hours_ago = lambda *hs: tuple(NOW - timedelta(hours=h) for h in hs)  # noqa: E731
    known = {
        "day": Person(invited_at=hours_ago(1, 2, 3)),  # 3 today: the default daily cap
        "week": Person(invited_at=hours_ago(*range(30, 30 + 10 * 12, 12))),  # 10 this week, none today
        "stale": Person(invited_at=hours_ago(25, 26, 27)),  # yesterday's count no longer
        "own": Person(invited_at=hours_ago(5), max_per_day=1),  # a personal cap below the tenant's
    }
    result = plan(people(("day", 0.9), ("week", 0.85), ("own", 0.8), ("stale", 0.7)), known=known)
    assert ids(result.invite) == ["stale"]
    assert skips(result) == {"day": "daily_cap", "week": "weekly_cap", "own": "daily_cap"}


def test_close_scores_go_to_whoever_was_invited_least_recently():
    known = {
        "busy": Person(last_invited_at=NOW - timedelta(hours=1)),
        "rested": Person(last_invited_at=NOW - timedelta(days=20)),
    }
    # busy and rested are within 5% of each other; fresh has never been invited but scores far lower.
    result = plan(people(("busy", 0.90), ("rested", 0.88), ("fresh", 0.50)), room=1, known=known)
    assert ids(result.invite) == ["rested"]
    far_apart = plan(people(("busy", 0.90), ("rested", 0.80)), room=1, known=known)
    assert ids(far_apart.invite) == ["busy"]


def test_skips_below_the_last_invitee_are_not_reported():
    known = {"low": Person(opted_out=True)}
    result = plan(people(("ann", 0.9), ("low", 0.1)), room=1, known=known)
    assert ids(result.invite) == ["ann"] and result.skipped == []


def close_to(similarity: float) -> tuple[Evidence, ...]:
    return (
        Evidence(post_id=f"p{similarity}", thread_id="t0", kind=PostKind.ANSWER, snippet="s", similarity=similarity),
    )


def test_nobody_is_invited_whose_posts_are_not_close_enough_to_the_question():
    """A high score earned by volume alone (activity, answers) invites nobody; closer people take the room."""
    floor = POLICY.min_similarity
    candidates = [
        Candidate(person_id="busy", score=9.0, evidence=close_to(floor - 0.05)),
        Candidate(person_id="silent", score=8.0),  # no evidence at all
        Candidate(person_id="expert", score=2.0, evidence=close_to(floor + 0.3)),
        Candidate(person_id="near", score=1.0, evidence=close_to(floor)),
    ]

    result = plan(candidates)

    assert ids(result.invite) == ["expert", "near"]
    assert skips(result) == {"busy": "not_close_enough", "silent": "not_close_enough"}
    assert not nobody_close_enough(candidates, set(), POLICY)
    assert nobody_close_enough(candidates, {"expert", "near"}, POLICY)


def test_the_floor_reads_the_matchers_closeness_and_only_answers_without_it():
    asked = Evidence(post_id="q", thread_id="t0", kind=PostKind.QUESTION, snippet="s", similarity=0.9)
    commented = Evidence(post_id="c", thread_id="t0", kind=PostKind.COMMENT, snippet="thanks!", similarity=0.9)
    candidates = [
        Candidate(person_id="asker-of-a-twin", score=3.0, evidence=(asked, commented)),  # an older matcher's match
        Candidate(person_id="measured", score=2.0, evidence=(asked,), closeness=0.6),
        Candidate(person_id="far", score=1.0, evidence=close_to(0.9), closeness=0.1),
    ]

    result = plan(candidates)

    assert ids(result.invite) == ["measured"]
    assert skips(result) == {"asker-of-a-twin": "not_close_enough", "far": "not_close_enough"}


def test_someone_who_said_not_my_area_near_this_question_is_not_invited_even_when_alone():
    # Parts are leads over the weakest candidate: the one sunk to the bottom shows no feedback part at all.
    sunk = Candidate(person_id="kim", score=0.0, evidence=close_to(0.9), closeness=0.9,
                     track_record=TrackRecord(answers=9, not_my_area_nearby=1))
    lifted = Candidate(person_id="lee", score=1.0, evidence=close_to(0.6), closeness=0.6,
                       track_record=TrackRecord(answers=2, answered_nearby=2, not_my_area_nearby=1))

    result = plan([sunk, lifted])

    assert ids(result.invite) == ["lee"]
    assert skips(result) == {"kim": "not_my_area"}


def test_a_tenant_may_set_its_own_similarity_floor():
    candidates = [Candidate(person_id="ann", score=1.0, evidence=close_to(0.3))]
    lenient = Policies(POLICY, parse_tenant_policies('{"acme": {"min_similarity": 0.2}}')).for_tenant("acme")

    assert ids(plan(candidates, policy=lenient).invite) == ["ann"]
    assert ids(plan(candidates).invite) == []
    with pytest.raises(ValueError, match="min_similarity"):
        parse_tenant_policies('{"acme": {"min_similarity": 2}}')


def test_a_person_listed_twice_is_chosen_once():
    assert ids(plan(people(("ann", 0.9), ("ann", 0.8), ("bob", 0.1))).invite) == ["ann", "bob"]


def test_tenant_overrides_change_only_what_they_name():
    policies = Policies(POLICY, parse_tenant_policies('{"acme": {"initial": 1, "escalation_delay": 60}}'))
    acme = policies.for_tenant("acme")
    assert (acme.initial, acme.escalation_delay, acme.per_day) == (1, timedelta(seconds=60), 3)
    assert policies.for_tenant("globex") == POLICY
    with pytest.raises(ValueError, match="NOTIFIER_TENANT_POLICIES"):
        parse_tenant_policies('{"acme": {"initail": 1}}')
    assert PolicyOverride().model_dump(exclude_none=True) == {}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NOTIFIER_MAX_INVITES_PER_THREAD", "0"),
        ("NOTIFIER_MAX_INVITES_TOTAL_PER_THREAD", "0"),
        ("NOTIFIER_MAX_INVITES_PER_DAY", "-1"),
        ("NOTIFIER_MAX_INVITES_PER_WEEK", "-1"),
        ("NOTIFIER_SPREAD_MARGIN", "1.5"),
        ("NOTIFIER_ESCALATION_DELAY", "-60"),
        ("NOTIFIER_MIN_SIMILARITY", "1.5"),
    ],
)
def test_policy_defaults_out_of_range_are_refused_naming_the_setting(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable.removeprefix("NOTIFIER_").lower()):
        NotifierSettings()
