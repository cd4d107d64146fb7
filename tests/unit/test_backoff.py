"""The restart delays of `expertmatch run`: doubling to a cap for a process that keeps dying, reset by a good run."""

from __future__ import annotations

import pytest

from services.embedded.backoff import Backoff
from tests.support.clocks import ManualClock

pytestmark = pytest.mark.unit


def crash_at_once(backoff: Backoff, times: int) -> list[float]:
    delays = []
    for _ in range(times):
        backoff.started()
        delays.append(backoff.delay())
    return delays


def test_a_process_that_dies_at_once_waits_twice_as_long_each_time_up_to_the_cap():
    backoff = Backoff(first=1, cap=30, stable_after=60, clock=ManualClock(1000.0))

    assert crash_at_once(backoff, 8) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_run_that_lasted_starts_the_delays_over():
    clock = ManualClock(1000.0)
    backoff = Backoff(first=1, cap=30, stable_after=60, clock=clock)
    assert crash_at_once(backoff, 4) == [1, 2, 4, 8]

    backoff.started()
    clock.now += 60
    assert backoff.delay() == 1
    assert crash_at_once(backoff, 2) == [2, 4]


def test_a_run_shorter_than_stable_after_keeps_the_delays_growing():
    clock = ManualClock(1000.0)
    backoff = Backoff(first=1, cap=30, stable_after=60, clock=clock)
    delays = []
    for _ in range(4):
        backoff.started()
        clock.now += 59
        delays.append(backoff.delay())

    assert delays == [1, 2, 4, 8]


def test_the_cap_holds_however_often_it_dies():
    backoff = Backoff(first=0.5, cap=30, clock=ManualClock(1000.0))

    delays = crash_at_once(backoff, 2000)

    assert delays[:3] == [0.5, 1, 2] and max(delays) == 30 and delays[-1] == 30
