"""Who gets invited to a thread."""

import pytest

from services.notifier.policy import choose_invitees
from shared.events import Candidate

pytestmark = pytest.mark.unit


def people(*pairs: tuple[str, float]) -> list[Candidate]:
    return [Candidate(person_id=person, score=score) for person, score in pairs]


def ids(chosen: list[Candidate]) -> list[str]:
    return [c.person_id for c in chosen]


def test_best_candidates_first_up_to_the_limit():
    candidates = people(("ann", 0.2), ("bob", 0.9), ("cy", 0.5), ("dee", 0.7))
    assert ids(choose_invitees(candidates, already_invited=(), excluded=(), limit=3)) == ["bob", "dee", "cy"]


def test_the_asker_and_participants_are_never_invited():
    candidates = people(("asker", 0.99), ("part", 0.95), ("ann", 0.5))
    chosen = choose_invitees(candidates, already_invited=(), excluded={"asker", "part"}, limit=3)
    assert ids(chosen) == ["ann"]


def test_people_already_invited_count_against_the_limit_and_are_not_invited_again():
    candidates = people(("ann", 0.9), ("bob", 0.8), ("cy", 0.7), ("dee", 0.6))
    chosen = choose_invitees(candidates, already_invited={"ann", "zed"}, excluded=(), limit=3)
    assert ids(chosen) == ["bob"]


def test_a_full_thread_invites_nobody():
    candidates = people(("ann", 0.9))
    assert choose_invitees(candidates, already_invited={"x", "y", "z"}, excluded=(), limit=3) == []


def test_a_person_listed_twice_is_chosen_once():
    candidates = people(("ann", 0.9), ("ann", 0.8), ("bob", 0.1))
    assert ids(choose_invitees(candidates, already_invited=(), excluded=(), limit=3)) == ["ann", "bob"]
