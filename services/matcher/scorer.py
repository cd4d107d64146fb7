"""Learning to rank: a linear scorer over the candidate features, and its fit on a tenant's past.

A training example is a past question with an accepted answer: its candidates' features as of
its own time, and which of them was accepted. The fit maximises the accepted answerer's softmax
probability among the candidates (a listwise conditional logit). Two guardrails keep it from
learning what is not true of people on a small or odd history: a feature that can only speak for
a person never gets a negative weight, and the weights are pulled toward the hand-set fusion,
the harder the fewer examples a tenant has. Until it has enough, the fusion itself ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

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
    "recent_share": 0.0,
}
# Features whose sign is known: more of them (closer posts, more answers, more accepted, more
# recent, more in the question's tags) never makes a person less likely to know. The fit may not
# turn them against anyone, or a person with no answers would lead on "answers" wherever the
# tenant's history happened to favour newcomers. `dense_other`, the person's own questions and
# comments near this one, shows interest, and asking is not knowing: its sign is the data's.
# Held at 0 or above, `accepted` lost what the free fit used it for (a negative weight beside a
# positive acceptance: an expert whose answering is current, not past). `recent_share`, a rate
# like acceptance, says that with a sign of its own. `expertmatch eval`, MRR / P@1 (acc), free
# (hits-only pools) -> non-negative -> non-negative with recent_share (both with the deeper
# pools, which alone cost dba 0.244 -> 0.240): physics 0.152/0.081 -> 0.136/0.070 ->
# 0.151/0.078; dba 0.247/0.148 -> 0.234/0.134 -> 0.240/0.143.
NON_NEGATIVE = frozenset(FEATURE_NAMES) - {"dense_other"}


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
class FitSettings:
    """How the fit runs: how hard the weights are pulled toward the fusion, and when it stops.

    The pull is `l2 + prior_examples / n` for n examples: the fusion counts as `prior_examples`
    questions' worth of evidence, so it decides much at 50 examples and little at 600.
    """

    # On standardised features and a mean loss; chosen with the converged fit on the four eval
    # datasets, where 0.1 shrank the weights too far (physics MRR 0.147 against 0.154 at 0.03).
    l2: float = 0.03
    prior_examples: float = 20.0
    steps: int = 500
    tolerance: float = 1e-10


def fit(examples: Sequence[Example], settings: FitSettings = FitSettings()) -> LinearScorer:
    """The linear scorer that puts each example's accepted answerer first, as far as a line can.

    The penalty pulls toward the fusion's weights scaled to fit these examples best (the fusion
    is a ranking, its scale is arbitrary); the weights of NON_NEGATIVE features stay at 0 or above.
    The objective is strictly convex and the bounds a box, so L-BFGS-B reaches its one minimum
    whatever the features' scale or correlation.
    """
    stacked = np.vstack([e.values for e in examples])
    center = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-9] = 1.0
    problem = _Problem(*_padded(examples, center, scale))
    problem.prior = problem.scaled_fusion(scale)
    problem.strength = settings.l2 + settings.prior_examples / len(examples)
    found = minimize(
        problem.loss_and_gradient,
        x0=problem.prior,
        jac=True,
        method="L-BFGS-B",
        bounds=BOUNDS,
        options={"maxiter": settings.steps, "ftol": settings.tolerance, "gtol": 1e-9},
    )
    return LinearScorer(weights=found.x, center=center, scale=scale, examples=len(examples))


BOUNDS = [(0.0, None) if name in NON_NEGATIVE else (None, None) for name in FEATURE_NAMES]


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


@dataclass
class _Problem:
    """The fit's objective: mean -log softmax(accepted answerer), plus a pull of `strength` toward `prior`."""

    values: np.ndarray  # (questions, candidates, features), standardised
    mask: np.ndarray  # which candidate slots are real
    positives: np.ndarray  # the accepted answerer's slot per question
    prior: np.ndarray | None = None
    strength: float = 0.0

    def probabilities(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each candidate's softmax probability within its question, and the log-partition per question."""
        logits = np.where(self.mask, self.values @ weights, -np.inf)
        top = logits.max(axis=1, keepdims=True)
        exp = np.exp(logits - top)
        total = exp.sum(axis=1, keepdims=True)
        return exp / total, (top + np.log(total))[:, 0]

    def likelihood_loss(self, weights: np.ndarray) -> float:
        _, partition = self.probabilities(weights)
        chosen = self.values[np.arange(len(self.positives)), self.positives] @ weights
        return float((partition - chosen).mean())

    def loss_and_gradient(self, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """The objective and its gradient: per question, the candidates' mean under the softmax minus the chosen."""
        probabilities, partition = self.probabilities(weights)
        chosen = self.values[np.arange(len(self.positives)), self.positives]
        expected = np.einsum("qc,qcf->qf", probabilities, self.values)
        pull = weights - (self.prior if self.prior is not None else 0.0)
        loss = float((partition - chosen @ weights).mean()) + 0.5 * self.strength * pull @ pull
        return loss, (expected - chosen).mean(axis=0) + self.strength * pull

    def scaled_fusion(self, scale: np.ndarray) -> np.ndarray:
        """The fusion's weights on standardised features, times the factor that fits the examples best."""
        fusion = np.array([FUSION_WEIGHTS[name] for name in FEATURE_NAMES]) * scale
        best = minimize_scalar(lambda a: self.likelihood_loss(a * fusion), bounds=(0.0, 100.0), method="bounded")
        return best.x * fusion


def mean_reciprocal_rank(scorer: LinearScorer, examples: Sequence[Example]) -> float:
    """How well a scorer ranks the accepted answerers of `examples` (1.0: always first)."""
    if not examples:
        return 0.0
    ranks = []
    for example in examples:
        scores = scorer.scores(example.values)
        ranks.append(1 + int((scores > scores[example.positive]).sum()))
    return float(np.mean([1.0 / r for r in ranks]))
