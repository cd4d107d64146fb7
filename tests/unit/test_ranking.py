"""The ranking: dense votes, the fused and learned scores, who ranks first, why, and with which evidence."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.matcher.features import FEATURE_NAMES, PART_OF, FeatureTable
from services.matcher.index.base import Hit
from services.matcher.ranking import EvidenceOrder, rank_candidates, vote_parts
from services.matcher.scorer import LinearScorer, fusion_scorer
from shared.events import PostKind, ScorePart

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


def evidence_of(hits, **kwargs) -> list[str]:
    """The order in which one person's dense hits become their evidence."""
    table = table_of({"ana": {"dense_answers": 1.0}}, {"ana": list(hits)})
    [ana] = rank_candidates(table, fusion_scorer(), now=NOW, evidence=len(hits), **kwargs)
    return [e.post_id for e in ana.evidence]


def test_evidence_puts_an_answer_before_a_question_at_equal_similarity():
    asked, answered = hit("ana", 0.8, kind=PostKind.QUESTION), hit("ana", 0.8)
    commented = hit("ana", 0.8, kind=PostKind.COMMENT)
    assert evidence_of([asked, commented, answered]) == [answered.post_id, commented.post_id, asked.post_id]


def test_evidence_prefers_an_accepted_answer_over_a_slightly_closer_question():
    asked, accepted = hit("ana", 0.75, kind=PostKind.QUESTION), hit("ana", 0.72, accepted=True)
    assert evidence_of([asked, accepted]) == [accepted.post_id, asked.post_id]


def test_evidence_prefers_recent_and_upvoted_posts_but_not_a_viral_loose_one():
    old, new = hit("ana", 0.8, age_days=720), hit("ana", 0.8, age_days=10)
    assert evidence_of([old, new], order=EvidenceOrder(half_life_days=180)) == [new.post_id, old.post_id]
    plain, upvoted = hit("ana", 0.8), hit("ana", 0.8, score=25)
    assert evidence_of([plain, upvoted]) == [upvoted.post_id, plain.post_id]
    viral, close = hit("ana", 0.6, score=5000), hit("ana", 0.85)
    assert evidence_of([viral, close]) == [close.post_id, viral.post_id]


def test_a_votes_parts_add_up_to_it_and_name_what_helped():
    parts = vote_parts(hit("ana", 0.8, accepted=True, score=10, age_days=400), now=NOW, order=EvidenceOrder())
    assert sum(parts.values()) == pytest.approx(
        math.exp(6 * -0.2) * 1.5 * (1 + 0.2 * math.log1p(10)) * (0.25 + 0.75 * 0.5 ** (400 / 365))
    )
    assert parts["accepted"] > 0 and parts["votes"] > 0 and parts["recency"] < 0


def test_evidence_is_the_persons_best_three_posts_best_first():
    hits = [hit("ana", s, text=f"post at {s}") for s in (0.5, 0.9, 0.6, 0.8, 0.7)]
    table = table_of({"ana": {"dense_answers": 1.0}}, {"ana": hits})
    [ana] = rank_candidates(table, fusion_scorer(), now=NOW)
    assert [e.similarity for e in ana.evidence] == [0.9, 0.8, 0.7]
    assert ana.evidence[0].snippet == "post at 0.9"
    assert ana.evidence[0].title == "A thread"


def table_of(
    rows: dict[str, dict[str, float]], dense: dict[str, list[Hit]], lexical: dict[str, list[Hit]] | None = None
):
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


def test_someone_found_only_by_their_answers_in_similar_threads_shows_those_answers():
    # Closest thread first; a post already shown by a search is not shown twice.
    near, far = hit("bo", 0.8, text="use the journal flag"), hit("bo", 0.6)
    shown = hit("ana", 0.7)
    table = FeatureTable(
        people=["ana", "bo"],
        values=np.array([[0.0] * len(FEATURE_NAMES), [1.0 if n == "thread_dense" else 0.0 for n in FEATURE_NAMES]]),
        dense_hits={"ana": [shown]},
        thread_hits={"ana": [shown], "bo": [far, near]},
    )

    bo, ana = rank_candidates(table, fusion_scorer(), now=NOW)

    assert [e.post_id for e in bo.evidence] == [near.post_id, far.post_id]
    assert bo.evidence[0].snippet == "use the journal flag" and bo.parts["similarity"] > 0
    assert [e.post_id for e in ana.evidence] == [shown.post_id]


def test_a_learned_scorer_can_overturn_the_fusion_and_limit_applies():
    rows = {"ana": {"dense_answers": 2.0}, "bo": {"dense_answers": 0.5, "recent_30": 2.0}, "cy": {}}
    table = table_of(rows, {})
    weights = np.zeros(len(FEATURE_NAMES))
    weights[FEATURE_NAMES.index("recent_30")] = 1.0
    learned = LinearScorer(weights=weights, center=np.zeros_like(weights), scale=np.ones_like(weights), examples=80)

    assert [c.person_id for c in rank_candidates(table, fusion_scorer(), now=NOW, limit=2)] == ["ana", "bo"]
    assert [c.person_id for c in rank_candidates(table, learned, now=NOW, limit=1)] == ["bo"]
    assert rank_candidates(table_of({}, {}), learned, now=NOW) == []


def test_every_score_part_the_matcher_writes_is_one_the_contract_names():
    written = set(PART_OF.values()) | {ScorePart.FEEDBACK}
    assert written == set(ScorePart), "a part without a name in the contract, or a name nothing writes"
