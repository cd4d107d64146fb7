"""The ceiling's hindsight weights: they rank the questions they were tuned on at least as well as the fit."""

from __future__ import annotations

import numpy as np
import pytest

from services.evaluation.ceiling import hindsight_scorer
from services.matcher.features import FEATURE_NAMES
from services.matcher.scorer import Example, FitSettings, fit, mean_reciprocal_rank

pytestmark = pytest.mark.unit

SHARP, STEADY = FEATURE_NAMES.index("dense_best"), FEATURE_NAMES.index("recent_30")


def disagreeing_examples(count: int, *, seed: int = 3) -> list[Example]:
    """Where likelihood and rank disagree: one feature puts the expert first on most questions
    and far last on the rest; another puts them a little ahead of the crowd every time."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        values = rng.normal(size=(30, len(FEATURE_NAMES)))
        positive = int(rng.integers(30))
        values[positive, SHARP] = values[:, SHARP].max() + 1.0 if rng.random() < 0.6 else -8.0
        values[positive, STEADY] += 1.5
        examples.append(Example(values=values, positive=positive))
    return examples


def test_hindsight_weights_rank_their_own_questions_better_than_the_likelihood_fit():
    examples = disagreeing_examples(300)

    likelihood = mean_reciprocal_rank(fit(examples, FitSettings()), examples)
    hindsight = hindsight_scorer(examples, FitSettings())

    assert mean_reciprocal_rank(hindsight, examples) > likelihood + 0.02
    # The sharp feature, first on most questions, weighs more once rank is what counts.
    assert hindsight.weights[SHARP] > fit(examples, FitSettings()).weights[SHARP]
