"""Responses to invitations: kept beside their question, and what those near a question say of its candidates."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np

from services.matcher.features import FeatureTable
from services.matcher.index.base import ExpertIndex, Feedback, FeedbackHit
from services.matcher.query import QuestionQuery
from shared.events import InvitationResponded, ResponseKind

log = logging.getLogger(__name__)

# Responses to invitations on the questions closest to this one. A response fades to nothing at
# REACH (a cosine similarity): a "not my area" is about that topic, not about the person everywhere.
# Measured on the se-* replays: answered reaching further (0.2-0.3) helped beer but cost
# quantumcomputing as much; a response reaching everywhere (0.0) cost beer 15% of its MRR.
FEEDBACK_DEPTH = 50
REACH = 0.5
# A question this close is "like this one" in a track record: a "not my area" there counts fully.
NEARBY = 0.75
# What each response says of the person near that question: answering shows it most.
RESPONSE_WEIGHTS = {
    ResponseKind.ANSWERED: (1.0, 0.0),
    ResponseKind.ACCEPTED: (0.5, 0.0),
    ResponseKind.DECLINED: (0.0, 0.0),
    ResponseKind.NOT_MY_AREA: (0.0, 1.0),
}


async def with_feedback(index: ExpertIndex, query: QuestionQuery, table: FeatureTable) -> FeatureTable:
    """The table with what responses to invitations near `query` (given before it) say of its people.

    Read only when ranking: the learned model does not use it, so training examples skip the search.
    """
    if not table.people:
        return table
    hits = await index.feedback_near(query.tenant, query.vector, limit=FEEDBACK_DEPTH, before=query.before)
    found = _feedback(hits)
    values = np.asarray([found.get(person, (0.0, 0.0)) for person in table.people], dtype=float)
    return replace(table, feedback=values, nearby=_nearby_responses(hits))


def _nearby_responses(hits: list[FeedbackHit]) -> dict[str, tuple[int, int]]:
    """Per person: how many questions at cosine NEARBY or closer they answered when invited, and how
    many they called not their area."""
    near = [h for h in hits if h.similarity >= NEARBY]
    answered = {(h.person_id, h.question_post_id) for h in near if h.response is ResponseKind.ANSWERED}
    refused = {(h.person_id, h.question_post_id) for h in near if h.response is ResponseKind.NOT_MY_AREA} - answered
    answers, refusals = Counter(p for p, _ in answered), Counter(p for p, _ in refused)
    return {person: (answers[person], refusals[person]) for person in answers | refusals}


def _feedback(hits: list[FeedbackHit]) -> dict[str, tuple[float, float]]:
    """Per person: how much their responses near this question speak for and against them.

    A response counts by its question's closeness: 1 for the same question, falling linearly to 0
    at REACH. A person's total is the strongest response plus a tenth of the rest, capped at
    1, so many distant responses never outweigh one on the same question. Where they answered a
    question, what else they said about it counts for nothing.
    """
    answered = {(h.person_id, h.question_post_id) for h in hits if h.response is ResponseKind.ANSWERED}
    found: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for hit in hits:
        if hit.response is not ResponseKind.ANSWERED and (hit.person_id, hit.question_post_id) in answered:
            continue
        weight_for, weight_against = RESPONSE_WEIGHTS.get(hit.response, (0.0, 0.0))
        closeness = min(max((hit.similarity - REACH) / (1.0 - REACH), 0.0), 1.0)
        found[hit.person_id][0].append(weight_for * closeness)
        found[hit.person_id][1].append(weight_against * closeness)
    return {person: (_strongest(f), _strongest(a)) for person, (f, a) in found.items()}


def _strongest(values: list[float]) -> float:
    if not values:
        return 0.0
    best = max(values)
    return min(1.0, best + 0.1 * (sum(values) - best))


async def record_response(index: ExpertIndex, event: InvitationResponded) -> None:
    """Keep a response beside its question's vector: the next questions close to it feel it."""
    response = event.data
    vector = await index.vector(event.tenant, response.question_post_id)
    if vector is None:
        # The question was deleted, or its asker erased: nothing to be close to.
        log.info("response %s: question %s is not indexed; dropped", event.id, response.question_post_id)
        return
    if not await index.author_counts(event.tenant, authors=[response.person_id], limit=1):
        # Nothing of theirs is indexed, so they are nobody's candidate: erased since they
        # responded (the erasure may overtake the response, on another topic), or never posted.
        log.info("response %s: its person has no post indexed; dropped", event.id)
        return
    await index.record_feedback(
        Feedback(
            tenant=event.tenant,
            question_post_id=response.question_post_id,
            thread_id=response.thread_id,
            person_id=response.person_id,
            response=response.response,
            at=response.responded_at,
            vector=vector,
        )
    )
