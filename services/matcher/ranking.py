"""The expertise model: candidates ranked by a scorer over their features, with evidence. No I/O.

Each dense hit's vote, `exp(k * (similarity - 1))` weighted by the contribution's kind,
acceptance, score and age, orders a person's evidence: their closest, accepted, well-received
and recent answers first. The ranking itself is `rank_candidates`: a linear scorer (the
hand-set fusion or the tenant's learned model) over the features of services/matcher/features.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from services.matcher.features import ACCEPTED_VOTE, FEATURE_NAMES, PART_OF, SHARPNESS, FeatureTable
from services.matcher.index.base import Hit
from services.matcher.scorer import LinearScorer
from shared.events import Candidate, Evidence, PostKind, ScorePart
from shared.text import snippet

VOTE_PARTS = ("similarity", "kind", "accepted", "votes", "recency")


# Responses to invitations near the question, as shares of the spread between the pool's best and
# weakest scores at full strength (the same question), whichever scorer ranks (fusion or learned).
# "Not my area" counts twice: on any question at least halfway close (cosine 0.75) it sinks the
# person to the bottom, even a clear expert far ahead of everyone else.
FEEDBACK_FOR = 1.0
FEEDBACK_AGAINST = 2.0


@dataclass(frozen=True, slots=True)
class EvidenceOrder:
    """How one person's posts are ordered as their evidence: each dense hit's vote and its factors.

    It orders evidence only; who ranks first is the scorer's (services/matcher/scorer.py).
    Defaults are a reasoned start, to be tuned on real data.
    """

    # Answering shows expertise, asking shows interest; comments sit in between.
    kind: dict[PostKind, float] = field(
        default_factory=lambda: {PostKind.ANSWER: 1.0, PostKind.COMMENT: 0.6, PostKind.QUESTION: 0.4}
    )
    accepted: float = ACCEPTED_VOTE
    # Multiplier per log unit of the post's score; log-damped so one viral post does not dominate.
    votes: float = 0.2
    half_life_days: float = 365.0
    # Old posts fade to this share of their vote, never to nothing: expertise outlives a year.
    recency_floor: float = 0.25
    # How sharply votes favour close matches, as the features' votes do.
    sharpness: float = SHARPNESS


def vote_factors(hit: Hit, *, now: datetime, order: EvidenceOrder) -> dict[str, float]:
    """The multipliers one hit's vote gets, by part name (`similarity` is the base vote)."""
    return {
        "similarity": math.exp(order.sharpness * (hit.similarity - 1.0)),
        "kind": order.kind.get(hit.kind, 1.0),
        "accepted": order.accepted if hit.accepted and hit.kind is PostKind.ANSWER else 1.0,
        "votes": _votes_factor(hit.score, order.votes),
        "recency": _recency_factor(hit.created_at, now=now, order=order),
    }


def _votes_factor(score: int, weight: float) -> float:
    damped = weight * math.log1p(abs(score))
    return 1.0 + damped if score >= 0 else 1.0 / (1.0 + damped)


def _recency_factor(created_at: datetime, *, now: datetime, order: EvidenceOrder) -> float:
    age_days = max((now - created_at).total_seconds() / 86400.0, 0.0)
    decay = 0.5 ** (age_days / order.half_life_days)
    return order.recency_floor + (1.0 - order.recency_floor) * decay


def vote_parts(hit: Hit, *, now: datetime, order: EvidenceOrder) -> dict[str, float]:
    """One hit's vote split into additive parts: each factor's share, applied in VOTE_PARTS order."""
    factors = vote_factors(hit, now=now, order=order)
    running = factors["similarity"]
    parts = {"similarity": running}
    for name in VOTE_PARTS[1:]:
        weighted = running * factors[name]
        parts[name] = weighted - running
        running = weighted
    return parts


def evidence_of(hit: Hit) -> Evidence:
    return Evidence(
        post_id=hit.post_id,
        thread_id=hit.thread_id,
        kind=hit.kind,
        title=hit.title,
        snippet=snippet(hit.text),
        similarity=hit.similarity,
        accepted=hit.accepted,
        score=hit.score,
        created_at=hit.created_at,
        url=hit.url,
    )


def rank_candidates(
    table: FeatureTable,
    scorer: LinearScorer,
    *,
    now: datetime,
    limit: int = 10,
    evidence: int = 3,
    order: EvidenceOrder = EvidenceOrder(),
) -> list[Candidate]:
    """The candidates of a feature table ranked by `scorer`, best first, each with evidence and parts.

    `order` only chooses and orders each person's evidence; feedback near the question moves scores.

    Scores are measured from the weakest candidate of the pool (who scores 0), so they are never
    negative; `parts` split that lead by what it came from (similarity, lexical, activity,
    answers, accepted, tags) and sum to the score. A part is negative where the person trails
    the weakest candidate on it.
    """
    if not table.people:
        return []
    terms = _plus_feedback_column(scorer.terms(table.values), table)
    terms = terms - terms[int(np.argmin(terms.sum(axis=1)))]
    scores = terms.sum(axis=1)
    best_first = sorted(range(len(table.people)), key=lambda i: (-scores[i], table.people[i]))[:limit]
    return [
        Candidate(
            person_id=table.people[i],
            score=float(scores[i]),
            evidence=_best_evidence(table, table.people[i], now=now, order=order, limit=evidence),
            parts=_grouped(terms[i]),
            closeness=table.closeness.get(table.people[i], 0.0),
            track_record=table.track_record(table.people[i]),
        )
        for i in best_first
    ]


def _plus_feedback_column(terms: np.ndarray, table: FeatureTable) -> np.ndarray:
    """The scorer's terms plus one column: what responses near this question say of each person.

    Measured in the spread of the pool's scores, so it moves people as far under the fusion as
    under a learned model, whose scores have another scale.
    """
    if table.feedback is None or not table.feedback.any():
        return np.hstack([terms, np.zeros((len(terms), 1))])
    scores = terms.sum(axis=1)
    spread = max(float(scores.max() - scores.min()), 1e-6)
    for_, against = table.feedback[:, 0], table.feedback[:, 1]
    column = spread * (FEEDBACK_FOR * for_ - FEEDBACK_AGAINST * against)
    return np.hstack([terms, column[:, None]])


def _grouped(terms: np.ndarray) -> dict[str, float]:
    """A candidate's terms by part: the features' groups, then `feedback` (the last column)."""
    parts: dict[str, float] = defaultdict(float)
    for name, value in zip(FEATURE_NAMES, terms[:-1], strict=True):
        parts[PART_OF[name].value] += float(value)
    if terms[-1]:
        parts[ScorePart.FEEDBACK.value] = float(terms[-1])
    return dict(parts)


def _best_evidence(
    table: FeatureTable, person: str, *, now: datetime, order: EvidenceOrder, limit: int
) -> tuple[Evidence, ...]:
    """A person's best posts: their dense hits by vote, posts found only by their words, then their
    answers in similar threads."""
    dense = {h.post_id: h for h in table.dense_hits.get(person, [])}
    ordered = sorted(dense.values(), key=lambda h: (-sum(vote_parts(h, now=now, order=order).values()), h.post_id))
    chosen = [evidence_of(hit) for hit in ordered[:limit]]
    for hit in table.lexical_hits.get(person, []):
        if len(chosen) >= limit:
            break
        if hit.post_id not in dense:
            # Found by its words, not its meaning: no cosine similarity to show.
            chosen.append(evidence_of(hit).model_copy(update={"similarity": 0.0}))
            dense[hit.post_id] = hit
    # Then their answers in threads like the question, closest thread first.
    for hit in sorted(table.thread_hits.get(person, []), key=lambda h: (-h.similarity, h.post_id)):
        if len(chosen) >= limit:
            break
        if hit.post_id not in dense:
            chosen.append(evidence_of(hit))
            dense[hit.post_id] = hit
    return tuple(chosen)
