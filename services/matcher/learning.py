"""Learning to rank per tenant: a linear scorer over the candidate features, fit on the tenant's past.

A training example is a past question with an accepted answer: its candidates' features as of
its own time, and which of them was accepted. The fit maximises the accepted answerer's softmax
probability among the candidates (a listwise conditional logit), in numpy, with an L2 penalty.
Until a tenant has enough examples, the hand-set fusion ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.matcher.features import FEATURE_NAMES

# One set of weights for every tenant, on the log-damped features; chosen once on all datasets.
FUSION_WEIGHTS = {
    "dense_answers": 1.0,
    "dense_other": 0.2,
    "dense_best": 1.0,
    "lexical": 0.5,
    "lexical_best": 0.5,
    "recent_7": 0.3,
    "recent_30": 0.3,
    "recent_90": 0.5,
    "answers": 0.1,
    "accepted": 0.2,
    "acceptance": 0.5,
    "tags": 0.3,
}


@dataclass(frozen=True, slots=True)
class LinearScorer:
    """score = sum_i weights_i * (x_i - center_i) / scale_i; each term is a feature's share."""

    weights: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    examples: int = 0  # how many past questions trained it (0: the hand-set fusion)

    def terms(self, values: np.ndarray) -> np.ndarray:
        """Each candidate's score split by feature: shape (candidates, features)."""
        return (values - self.center) / self.scale * self.weights

    def scores(self, values: np.ndarray) -> np.ndarray:
        return self.terms(values).sum(axis=1)


def fusion_scorer() -> LinearScorer:
    """The hand-set fusion: fixed weights on the raw log-damped features."""
    weights = np.array([FUSION_WEIGHTS[name] for name in FEATURE_NAMES], dtype=float)
    zeros, ones = np.zeros(len(FEATURE_NAMES)), np.ones(len(FEATURE_NAMES))
    return LinearScorer(weights=weights, center=zeros, scale=ones)


@dataclass(frozen=True, slots=True)
class Example:
    """A past question's candidates (rows of features) and the row of its accepted answerer."""

    values: np.ndarray
    positive: int


@dataclass(frozen=True, slots=True)
class Training:
    """How the fit runs: L2 strength, steps of full-batch gradient descent, step size."""

    l2: float = 0.1
    steps: int = 300
    rate: float = 0.1


def fit(examples: Sequence[Example], training: Training = Training()) -> LinearScorer:
    """The linear scorer that puts each example's accepted answerer first, as far as a line can."""
    stacked = np.vstack([e.values for e in examples])
    center = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    values, mask, positives = _padded(examples, center, scale)
    weights = np.zeros(len(FEATURE_NAMES))
    velocity = np.zeros_like(weights)
    for _ in range(training.steps):
        gradient = _gradient(weights, values, mask, positives) + training.l2 * weights
        velocity = 0.9 * velocity - training.rate * gradient
        weights = weights + velocity
    return LinearScorer(weights=weights, center=center, scale=scale, examples=len(examples))


def _padded(examples: Sequence[Example], center: np.ndarray, scale: np.ndarray):
    """The examples' standardised candidates in one (questions, candidates, features) array."""
    width = max(len(e.values) for e in examples)
    values = np.zeros((len(examples), width, len(FEATURE_NAMES)))
    mask = np.zeros((len(examples), width), dtype=bool)
    for row, example in enumerate(examples):
        values[row, : len(example.values)] = (example.values - center) / scale
        mask[row, : len(example.values)] = True
    positives = np.array([e.positive for e in examples])
    return values, mask, positives


def _gradient(weights: np.ndarray, values: np.ndarray, mask: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Mean gradient of -log softmax(positive) over the examples."""
    logits = np.where(mask, values @ weights, -np.inf)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    expected = np.einsum("qc,qcf->qf", probabilities, values)
    chosen = values[np.arange(len(positives)), positives]
    return (expected - chosen).mean(axis=0)


def mean_reciprocal_rank(scorer: LinearScorer, examples: Sequence[Example]) -> float:
    """How well a scorer ranks the accepted answerers of `examples` (1.0: always first)."""
    if not examples:
        return 0.0
    ranks = []
    for example in examples:
        scores = scorer.scores(example.values)
        ranks.append(1 + int((scores > scores[example.positive]).sum()))
    return float(np.mean([1.0 / r for r in ranks]))
