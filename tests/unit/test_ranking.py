"""The ranking: dense votes, the fused and learned scores, who ranks first, why, and with which evidence."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.matcher.features import FEATURE_NAMES
from services.matcher.index.base import Hit
from services.matcher.learning import LinearScorer, fusion_scorer
from services.matcher.ranking import PART_NAMES, Weights, rank_candidates, rank_experts
from shared.events import PostKind

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)
_ids = itertools.count()


def hit(author: str, similarity: float, *, kind: PostKind = PostKind.ANSWER, age_days: float = 0,
        accepted: bool = False, score: int = 0, text: str = "a post") -> Hit:
    post_id = f"p{next(_ids)}"
    return Hit(
        post_id=post_id,
        thread_id=f"t-{post_id}",
        author_id=author,
        kind=kind,
        title="A thread",
        text=text,
        created_at=NOW - timedelta(days=age_days),
        similarity=similarity,
        accepted=accepted,
        score=score,
    )


def ranked(hits, **kwargs) -> list[str]:
    return [c.person_id for c in rank_experts(hits, now=NOW, **kwargs)]


# Names sort against the expected order, so a tie broken by name cannot pass these tests.
def test_an_answer_beats_a_question_at_equal_similarity():
    assert ranked([hit("ann_asks", 0.8, kind=PostKind.QUESTION), hit("zoe_answers", 0.8)]) == ["zoe_answers", "ann_asks"]


def test_a_comment_sits_between_an_answer_and_a_question():
    hits = [hit("a_asks", 0.7, kind=PostKind.QUESTION), hit("b_comments", 0.7, kind=PostKind.COMMENT), hit("c_answers", 0.7)]
    assert ranked(hits) == ["c_answers", "b_comments", "a_asks"]


def test_many_good_matches_beat_one_lucky_hit():
    hits = [hit("lucky", 0.82)] + [hit("steady", 0.7) for _ in range(4)]
    assert ranked(hits)[0] == "steady"


def test_a_crowd_of_loose_matches_does_not_beat_a_close_one():
    hits = [hit("close", 0.9)] + [hit("prolific", 0.3) for _ in range(10)]
    assert ranked(hits)[0] == "close"


def test_a_recent_answer_beats_an_old_one_and_old_ones_still_count():
    weights = Weights(half_life_days=180)
    candidates = rank_experts([hit("a_old", 0.8, age_days=720), hit("z_new", 0.8, age_days=10)], now=NOW, weights=weights)
    assert [c.person_id for c in candidates] == ["z_new", "a_old"]
    old = candidates[1]
    # Four half-lives fade the vote to its floor plus 1/16 of the rest, not to nothing.
    assert old.score == pytest.approx(math.exp(6 * -0.2) * (0.25 + 0.75 / 16))


def test_accepted_answers_and_votes_count_more():
    assert ranked([hit("a_plain", 0.8), hit("z_accepted", 0.8, accepted=True)])[0] == "z_accepted"
    assert ranked([hit("a_plain", 0.8), hit("z_upvoted", 0.8, score=25)])[0] == "z_upvoted"
    assert ranked([hit("z_plain", 0.8), hit("a_downvoted", 0.8, score=-5)])[-1] == "a_downvoted"


def test_votes_are_damped_so_one_viral_post_does_not_beat_a_much_closer_one():
    assert ranked([hit("viral", 0.6, score=5000), hit("close", 0.85)])[0] == "close"


def test_evidence_is_the_persons_best_three_posts_best_first():
    hits = [hit("ana", s, text=f"post at {s}") for s in (0.5, 0.9, 0.6, 0.8, 0.7)] + [hit("bo", 0.95)]
    ana = next(c for c in rank_experts(hits, now=NOW) if c.person_id == "ana")
    assert [e.similarity for e in ana.evidence] == [0.9, 0.8, 0.7]
    assert ana.evidence[0].snippet == "post at 0.9"
    assert ana.evidence[0].title == "A thread"


def test_evidence_prefers_an_accepted_answer_over_a_slightly_closer_question():
    hits = [hit("ana", 0.75, kind=PostKind.QUESTION), hit("ana", 0.72, accepted=True)]
    [ana] = rank_experts(hits, now=NOW, evidence=1)
    assert ana.evidence[0].accepted is True


def test_the_asker_is_never_ranked():
    hits = [hit("asker", 0.99), hit("ana", 0.5)]
    assert ranked(hits, exclude={"asker"}) == ["ana"]


def test_parts_add_up_to_the_score_and_name_what_helped():
    hits = [hit("ana", 0.8, accepted=True, score=10, age_days=400), hit("ana", 0.6, kind=PostKind.QUESTION)]
    [ana] = rank_experts(hits, now=NOW)
    assert set(ana.parts) == set(PART_NAMES)
    assert sum(ana.parts.values()) == pytest.approx(ana.score)
    assert ana.parts["accepted"] > 0 and ana.parts["votes"] > 0
    assert ana.parts["kind"] < 0  # the question counted less than an answer would
    assert ana.parts["recency"] < 0  # a post over a year old


def test_limit_and_a_post_found_twice_votes_once():
    twice = hit("ana", 0.8)
    [ana] = rank_experts([twice, twice], now=NOW)
    [single] = rank_experts([twice], now=NOW)
    assert ana.score == single.score and len(ana.evidence) == 1
    assert ranked([hit(f"p{i}", 0.5 + i / 100) for i in range(20)], limit=3) == ["p19", "p18", "p17"]


def test_no_hits_no_candidates():
    assert rank_experts([], now=NOW) == []


def table_of(rows: dict[str, dict[str, float]], dense: dict[str, list[Hit]], lexical: dict[str, list[Hit]] | None = None):
    from services.matcher.features import FEATURE_NAMES, FeatureTable

    values = np.array([[r.get(name, 0.0) for name in FEATURE_NAMES] for r in rows.values()])
    return FeatureTable(people=list(rows), values=values, dense_hits=dense, lexical_hits=lexical or {})


def test_the_fusion_ranks_by_its_weights_and_parts_add_up_to_a_non_negative_score():
    close, loose = hit("ana", 0.9), hit("bo", 0.5)
    table = table_of(
        {"bo": {"dense_answers": 0.2, "recent_90": 0.5}, "ana": {"dense_answers": 2.0, "tags": 1.0, "recent_90": 0.5}},
        {"ana": [close], "bo": [loose]},
    )

    ana, bo = rank_candidates(table, fusion_scorer(), now=NOW)

    assert (ana.person_id, bo.person_id) == ("ana", "bo")
    assert bo.score == pytest.approx(0.0) and ana.score > 0
    assert sum(ana.parts.values()) == pytest.approx(ana.score)
    assert ana.parts["similarity"] > 0 and ana.parts["tags"] > 0 and ana.parts["activity"] == pytest.approx(0.0)


def test_evidence_is_the_best_dense_posts_then_posts_found_only_by_their_words():
    best, second = hit("ana", 0.9, accepted=True), hit("ana", 0.6)
    worded = hit("ana", 7.5, text="ledgerd crashed")
    table = table_of({"ana": {"dense_answers": 1.0}}, {"ana": [second, best]}, {"ana": [worded, best]})

    [ana] = rank_candidates(table, fusion_scorer(), now=NOW, evidence=3)

    assert [e.post_id for e in ana.evidence] == [best.post_id, second.post_id, worded.post_id]
    # A post found by its words alone has no cosine similarity to show.
    assert ana.evidence[2].similarity == 0.0


def test_a_learned_scorer_can_overturn_the_fusion_and_limit_applies():
    rows = {"ana": {"dense_answers": 2.0}, "bo": {"dense_answers": 0.5, "recent_30": 2.0}, "cy": {}}
    table = table_of(rows, {})
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index("recent_30")] = 1.0
    learned = LinearScorer(weights=weights, center=np.zeros_like(weights), scale=np.ones_like(weights), examples=80)

    assert [c.person_id for c in rank_candidates(table, fusion_scorer(), now=NOW, limit=2)] == ["ana", "bo"]
    assert [c.person_id for c in rank_candidates(table, learned, now=NOW, limit=1)] == ["bo"]
    assert rank_candidates(table_of({}, {}), learned, now=NOW) == []
