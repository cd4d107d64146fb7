"""A ceiling for the ranking's features: one set of weights chosen in hindsight, on the test questions.

Live, a question is ranked by weights fit on its past. Here the weights are tuned on the test
questions' own accepted answerers, so no live ranking can have them. If expertmatch scores close
to this, better weights cannot lift it much: only new features, or deeper candidate pools, can.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from services.evaluation.metrics import summarize
from services.evaluation.replay import MatcherSystem, ReplayResult
from services.matcher.scorer import (
    Example,
    FitSettings,
    LinearScorer,
    fit,
    mean_reciprocal_rank,
)

# Each coordinate step moves one weight by these multiples of its size (at least 0.1).
STEPS = (-8.0, -4.0, -2.0, -1.0, -0.5, -0.25, -0.1, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
ROUNDS = 5


def hindsight_scorer(examples: Sequence[Example], settings: FitSettings) -> LinearScorer:
    """The weights that rank `examples` best: coordinate ascent on their MRR from the likelihood fit.

    The fit maximises the accepted answerers' likelihood, which is not their MRR; climbing one
    weight at a time on the MRR itself (Metzler and Croft's coordinate ascent) closes that gap.
    """
    scorer = fit(examples, settings)
    best = mean_reciprocal_rank(scorer, examples)
    for _ in range(ROUNDS):
        improved = False
        for feature in range(len(scorer.weights)):
            for step in STEPS:
                weights = scorer.weights.copy()
                weights[feature] += step * max(abs(weights[feature]), 0.1)
                candidate = replace(scorer, weights=weights)
                value = mean_reciprocal_rank(candidate, examples)
                if value > best + 1e-9:
                    scorer, best, improved = candidate, value, True
        if not improved:
            break
    return scorer


async def score_ceiling(
    matcher: MatcherSystem, result: ReplayResult, settings: FitSettings, depth: int
) -> dict[str, float | int]:
    """The acc scores of the test questions ranked by hindsight weights over expertmatch's own features.

    `in_pool` is the share of those questions whose accepted answerer was a candidate at all: no
    weights can find the others.
    """
    accepted = {j.question_id: j.relevant["acc"] for j in result.judged if j.relevant["acc"]}
    examples = await matcher.service.trainer.examples(matcher.tenant, accepted)
    usable = [e for e in examples.values() if e is not None]
    scorer = hindsight_scorer(usable, settings) if usable else None
    judged: list[tuple[list[str], Collection[str]]] = []
    for question_id, relevant in accepted.items():
        example = examples.get(question_id)
        if example is None or scorer is None:
            judged.append(([], relevant))  # not a candidate: no weights find them
            continue
        scores = scorer.scores(example.values)
        rows = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:depth]
        # The example's rows stand for its candidates: only the accepted answerer's place counts.
        judged.append(([str(row) for row in rows], {str(example.positive)}))
    return summarize(judged) | {"in_pool": len(usable) / len(accepted) if accepted else 0.0}
