"""most_active and bm25 on a tiny hand-made replay."""

from __future__ import annotations

import pytest

from services.evaluation.baselines import Bm25Experts, MostActive
from services.evaluation.replay import replay
from tests.unit.test_eval_replay import a, q

pytestmark = pytest.mark.unit

PAST = [
    q(1, "ann", "sourdough starter feeding schedule"),
    a(2, "bob", 1, "twice a day"),
    a(3, "cat", 1, "once a day is fine"),
    q(4, "dan", "espresso grind size for a burr grinder"),
    a(5, "cat", 4, "go finer"),
    q(6, "eve", "espresso tamping pressure"),
    a(7, "cat", 6, "about 15 kg"),
    a(8, "ann", 6, "consistency beats pressure"),
]


async def test_most_active_ranks_by_answers_so_far_and_skips_the_asker():
    system = MostActive()
    await system.observe(PAST)
    assert await system.rank(q(9, "zed", "anything"), limit=10) == ["cat", "ann", "bob"]
    assert await system.rank(q(9, "cat", "anything"), limit=2) == ["ann", "bob"]


async def test_bm25_votes_matching_past_questions_to_their_answerers():
    system = Bm25Experts()
    await system.observe(PAST)
    ranked = await system.rank(q(9, "zed", "best grind for espresso"), limit=10)
    # Only cat answered espresso questions matching "grind" and "espresso"; ann matches one.
    assert ranked[:2] == ["cat", "ann"]
    assert "bob" not in ranked


async def test_bm25_combsum_adds_the_votes_of_several_questions():
    system = Bm25Experts()
    await system.observe(PAST)
    # "espresso" matches two questions: cat answered both, ann one of them.
    ranked = await system.rank(q(9, "zed", "espresso"), limit=10)
    assert ranked == ["cat", "ann"]


async def test_bm25_never_counts_answers_that_arrive_after_the_question():
    system = Bm25Experts()
    posts = [*PAST, q(9, "zed", "sourdough starter feeding"), a(10, "fay", 9, "feed it flour"),
             q(11, "gus", "sourdough starter feeding again")]
    result = await replay(posts, [system], test_fraction=0.4)  # the last 2 of 5 questions
    rankings = {j.question_id: j.rankings["bm25"] for j in result.judged}
    # When question 9 was asked, fay had not answered anything yet.
    assert "fay" not in rankings["9"]
    assert set(rankings["9"]) == {"bob", "cat"}
    # By question 11, fay's answer to 9 counts, and 9 is in the index.
    assert "fay" in rankings["11"]
    assert system.builds == 2
