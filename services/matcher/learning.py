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
    "thread_dense": 1.0,
    "thread_lexical": 0.5,
    "since_last": 0.1,
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
    """How the fit runs: L2 strength, at most `steps` Newton steps, stopping when a step gains < `tolerance`."""

    # On standardised features and a mean loss; chosen with the converged fit on the four eval
    # datasets, where 0.1 shrank the weights too far (physics MRR 0.147 against 0.154 at 0.03).
    l2: float = 0.03
    steps: int = 50
    tolerance: float = 1e-9


def fit(examples: Sequence[Example], training: Training = Training()) -> LinearScorer:
    """The linear scorer that puts each example's accepted answerer first, as far as a line can.

    The penalised objective is strictly convex, so Newton's method with a halving line search
    reaches its one minimum in a few steps, whatever the features' scale or correlation (plain
    gradient descent with momentum oscillated on correlated features and never settled).
    """
    stacked = np.vstack([e.values for e in examples])
    center = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    values, mask, positives = _padded(examples, center, scale)
    weights = np.zeros(len(FEATURE_NAMES))
    loss = _loss(weights, values, mask, positives, training.l2)
    for _ in range(training.steps):
        gradient, hessian = _derivatives(weights, values, mask, positives, training.l2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-6:
            candidate = weights - size * step
            candidate_loss = _loss(candidate, values, mask, positives, training.l2)
            if candidate_loss <= loss:
                break
            size /= 2
        else:
            break
        weights, gained, loss = candidate, loss - candidate_loss, candidate_loss
        if gained < training.tolerance:
            break
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


def _probabilities(weights: np.ndarray, values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's softmax probability within its question, and the log-partition per question."""
    logits = np.where(mask, values @ weights, -np.inf)
    top = logits.max(axis=1, keepdims=True)
    exp = np.exp(logits - top)
    total = exp.sum(axis=1, keepdims=True)
    return exp / total, (top + np.log(total))[:, 0]


def _loss(weights: np.ndarray, values: np.ndarray, mask: np.ndarray, positives: np.ndarray, l2: float) -> float:
    """Mean -log softmax(positive) over the examples, plus the L2 penalty."""
    _, partition = _probabilities(weights, values, mask)
    chosen = values[np.arange(len(positives)), positives] @ weights
    return float((partition - chosen).mean() + 0.5 * l2 * weights @ weights)


def _derivatives(weights: np.ndarray, values: np.ndarray, mask: np.ndarray, positives: np.ndarray, l2: float):
    """Gradient and Hessian of `_loss`: per question, the candidates' mean and covariance under the softmax."""
    probabilities, _ = _probabilities(weights, values, mask)
    expected = np.einsum("qc,qcf->qf", probabilities, values)
    chosen = values[np.arange(len(positives)), positives]
    gradient = (expected - chosen).mean(axis=0) + l2 * weights
    second = np.einsum("qc,qcf,qcg->fg", probabilities, values, values, optimize=True) / len(positives)
    hessian = second - expected.T @ expected / len(positives) + l2 * np.eye(len(weights))
    return gradient, hessian


def mean_reciprocal_rank(scorer: LinearScorer, examples: Sequence[Example]) -> float:
    """How well a scorer ranks the accepted answerers of `examples` (1.0: always first)."""
    if not examples:
        return 0.0
    ranks = []
    for example in examples:
        scores = scorer.scores(example.values)
        ranks.append(1 + int((scores > scores[example.positive]).sum()))
    return float(np.mean([1.0 / r for r in ranks]))
