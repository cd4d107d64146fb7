"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from services.evaluation.metrics import hit_at, hit_curve, ndcg_at, reciprocal_rank, summarize

pytestmark = pytest.mark.unit


def test_reciprocal_rank_is_one_over_the_first_relevant_rank():
    assert reciprocal_rank(["a", "b", "c"], {"c", "b"}) == 0.5
    assert reciprocal_rank(["a", "b", "c"], {"a"}) == 1.0
    assert reciprocal_rank(["a", "b"], {"z"}) == 0.0


def test_hit_at_k_counts_a_relevant_person_within_k():
    assert hit_at(["a", "b", "c"], {"c"}, 2) == 0.0
    assert hit_at(["a", "b", "c"], {"c"}, 3) == 1.0


def test_ndcg_uses_binary_gains_against_the_ideal_order():
    # Relevant at ranks 2 and 4, two relevant people in all:
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1/log2(2) + 1/log2(3).
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["a", "x", "b", "y"], {"x", "y"}, 10) == pytest.approx(expected)
    assert ndcg_at(["x", "y"], {"x", "y"}, 10) == pytest.approx(1.0)
    # Cut at k: a relevant person below it adds nothing.
    assert ndcg_at(["a", "b", "x"], {"x"}, 2) == 0.0


def test_summary_averages_over_questions_with_a_relevant_person_only():
    judged = [
        (["a", "b"], {"a"}),  # rr 1, p@1 1
        (["a", "b", "c", "d", "e", "f"], {"f"}),  # rr 1/6, outside the top 5
        (["a"], set()),  # nobody relevant: not counted
        (["a", "b"], {"z"}),  # relevant person not ranked: 0
    ]
    scores = summarize(judged)
    assert scores["n"] == 3
    assert scores["mrr"] == pytest.approx((1 + 1 / 6 + 0) / 3)
    assert scores["p@1"] == pytest.approx(1 / 3)
    assert scores["hit@5"] == pytest.approx(1 / 3)
    assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(7)) / 3)


def test_hit_curve_rises_with_k():
    judged = [(["a", "b", "c"], {"c"}), (["a"], {"a"})]
    assert hit_curve(judged, [1, 2, 3]) == [0.5, 0.5, 1.0]


def test_no_judged_questions_give_zeros_not_errors():
    assert summarize([]) == {"mrr": 0.0, "p@1": 0.0, "hit@3": 0.0, "hit@5": 0.0, "ndcg@10": 0.0, "n": 0}
