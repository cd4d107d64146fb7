"""Candidate people for a question and their features, read from the index as of the question's time.

Every read is bounded in time: searches to the question's moment, per-author counts to the start
of its day. So the features of a past question are what the index held when it was asked: live
ranking and training examples for learning to rank come from one function.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from services.matcher.counts import (
    LONG_AGO,
    RECENT_DAYS,
    AnswerCounts,
    DailyCounts,
    answer_counts,
    since_last_answer,
    tag_scores,
)
from services.matcher.index.base import ExpertIndex, Hit
from services.matcher.query import QuestionQuery
from shared.events import PostKind, ScorePart, TrackRecord

# Each feature is a log-damped count or vote; the order is the column order of a FeatureTable.
FEATURE_NAMES = (
    "dense_answers",  # expCombSUM of the person's answers among the dense hits
    "dense_other",  # the same for their questions and comments (interest, not yet expertise)
    "dense_best",  # their closest answer's similarity
    "lexical",  # CombSUM of their contributions' lexical scores, as shares of the best score
    "lexical_best",
    "recent_7",  # answers in the 7, 30 and 90 days before the question's day
    "recent_30",
    "recent_90",
    "answers",  # answers ever (before the question)
    "accepted",  # accepted answers ever
    "acceptance",  # accepted share of their answers, shrunk towards none for few answers
    "tags",  # answers tagged like the question, each tag weighted by its rarity
    "thread_dense",  # expCombSUM of the dense question hits whose threads the person answered
    "thread_lexical",  # CombSUM of the lexical question hits' shares whose threads they answered
    "since_last",  # minus log of how many of the tenant's answers came since the person's latest
    "recent_share",  # the share of their answers given in the last 90 days (0 without answers)
)
# Where each feature's share of a score is reported (Candidate.parts).
PART_OF = {
    "dense_answers": ScorePart.SIMILARITY,
    "dense_other": ScorePart.SIMILARITY,
    "dense_best": ScorePart.SIMILARITY,
    "lexical": ScorePart.LEXICAL,
    "lexical_best": ScorePart.LEXICAL,
    "recent_7": ScorePart.ACTIVITY,
    "recent_30": ScorePart.ACTIVITY,
    "recent_90": ScorePart.ACTIVITY,
    "answers": ScorePart.ANSWERS,
    "accepted": ScorePart.ACCEPTED,
    "acceptance": ScorePart.ACCEPTED,
    "tags": ScorePart.TAGS,
    "thread_dense": ScorePart.SIMILARITY,
    "thread_lexical": ScorePart.LEXICAL,
    "since_last": ScorePart.ACTIVITY,
    "recent_share": ScorePart.ACTIVITY,
}
# At 6, a hit at similarity 0.8 votes like ten at 0.42: many good matches beat one lucky one.
SHARPNESS = 6.0

# An accepted answer says more than any other answer: near the question or in a similar thread.
ACCEPTED_VOTE = 1.5


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """One row of features per candidate person, and the hits that are their evidence."""

    people: list[str]
    values: np.ndarray  # shape (len(people), len(FEATURE_NAMES))
    dense_hits: dict[str, list[Hit]] = field(default_factory=dict)  # by person, closest first
    lexical_hits: dict[str, list[Hit]] = field(default_factory=dict)  # by person, best first
    # Their answers in the threads of similar questions, similarity that of the thread's question.
    thread_hits: dict[str, list[Hit]] = field(default_factory=dict)
    # Per person: (for, against) in [0, 1], what their responses near this question said.
    feedback: np.ndarray | None = None
    counts: AnswerCounts | None = None  # the tenant's answer counts the features were read from
    # By person: (answered, not my area) responses to invitations to questions at cosine NEARBY or closer.
    nearby: dict[str, tuple[int, int]] = field(default_factory=dict)
    # By person: the similarity of their closest answer, or of the closest question whose thread
    # they answered, among the dense hits; absent for people with neither.
    closeness: dict[str, float] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, FEATURE_NAMES.index(name)]

    def track_record(self, person: str) -> TrackRecord | None:
        """The counts behind a person's features: facts an invitation may state."""
        if self.counts is None:
            return None
        return self.counts.of(person, nearby=self.nearby.get(person, (0, 0)))


@dataclass(frozen=True, slots=True)
class CandidatePool:
    """How deep to look: contributions from the dense and from the lexical search, and beyond them
    the people most answering in the question's tags and the tenant's latest answerers."""

    dense: int = 300
    lexical: int = 300
    # On the replays, the accepted answerer was a candidate for 59.5% of physics test questions
    # (85.5% had posted before); with these, 77.0%. dba: 78.4% -> 86.4% of 88.0%.
    tagged: int = 100
    recent: int = 300


async def candidate_features(
    index: ExpertIndex, query: QuestionQuery, *, pool: CandidatePool, daily: DailyCounts | None = None
) -> FeatureTable:
    """The candidates for `query` and their features, everything as of `query.now`."""
    daily = daily or DailyCounts(index)
    # The counts do not depend on the hits: all asked at once, so the index never waits for the
    # next request (and a Qdrant server answers them side by side).
    (dense, lexical), counts, since_last = await asyncio.gather(
        _hits(index, query, pool), answer_counts(daily, query), since_last_answer(index, daily, query)
    )
    answers = await _thread_answers(index, query, dense, lexical)
    excluded = set(query.exclude_authors)
    found = dict.fromkeys(h.author_id for h in [*dense, *lexical, *answers])
    if not found:
        return FeatureTable(people=[], values=np.zeros((0, len(FEATURE_NAMES))))
    scores_in_tags = tag_scores(counts)
    for person in _beyond_the_hits(scores_in_tags, since_last, pool):
        found.setdefault(person)
    people = [p for p in found if p not in excluded]
    if not people:
        return FeatureTable(people=[], values=np.zeros((0, len(FEATURE_NAMES))))
    columns = {
        **_dense_columns(dense, people),
        **_lexical_columns(lexical, people),
        **_count_columns(counts, people),
        "tags": [scores_in_tags.get(person, 0.0) for person in people],
        **_thread_columns(dense, lexical, answers, people),
        "since_last": [since_last.get(person, LONG_AGO) for person in people],
    }
    thread_hits = _with_question_similarity(answers, dense)
    return FeatureTable(
        people=people,
        # Column by column: a pool holds hundreds of people, and a name out of place fails here.
        values=np.column_stack([np.asarray(columns[name], dtype=float) for name in FEATURE_NAMES]),
        dense_hits=_by_person(dense),
        lexical_hits=_by_person(lexical),
        thread_hits=_by_person(thread_hits),
        counts=counts,
        closeness=_closeness(dense, thread_hits),
    )


def _dense_columns(dense: list[Hit], people: list[str]) -> dict[str, list[float]]:
    votes = _dense_votes(dense)
    # Someone with no answer among the hits is at most as close as the farthest hit.
    floor = min((h.similarity for h in dense), default=0.0)
    found = [votes.get(person, (0.0, 0.0, floor)) for person in people]
    return dict(zip(("dense_answers", "dense_other", "dense_best"), map(list, zip(*found, strict=True)), strict=True))


def _lexical_columns(lexical: list[Hit], people: list[str]) -> dict[str, list[float]]:
    votes = _lexical_votes(lexical)
    found = [votes.get(person, (0.0, 0.0)) for person in people]
    return dict(zip(("lexical", "lexical_best"), map(list, zip(*found, strict=True)), strict=True))


def _thread_columns(
    dense: list[Hit], lexical: list[Hit], answers: list[Hit], people: list[str]
) -> dict[str, list[float]]:
    votes = _thread_votes(dense, lexical, answers)
    found = [votes.get(person, (0.0, 0.0)) for person in people]
    return dict(zip(("thread_dense", "thread_lexical"), map(list, zip(*found, strict=True)), strict=True))


def _count_columns(counts: AnswerCounts, people: list[str]) -> dict[str, list[float]]:
    answers = [counts.answers.get(person, 0) for person in people]
    accepted = [counts.accepted.get(person, 0) for person in people]
    recent = {days: [counts.recent[days].get(person, 0) for person in people] for days in RECENT_DAYS}
    return {
        **{f"recent_{days}": [math.log1p(n) for n in recent[days]] for days in RECENT_DAYS},
        "answers": [math.log1p(n) for n in answers],
        "accepted": [math.log1p(n) for n in accepted],
        "acceptance": [a / (n + 5.0) for a, n in zip(accepted, answers, strict=True)],
        "recent_share": [r / (n + 1.0) for r, n in zip(recent[90], answers, strict=True)],
    }


def _closeness(dense: list[Hit], thread_hits: list[Hit]) -> dict[str, float]:
    """Per person: their closest answer among the dense hits, or their answer in the thread of the closest question."""
    found: dict[str, float] = {}
    answers = [h for h in dense if h.kind is PostKind.ANSWER]
    for hit in [*answers, *(h for h in thread_hits if h.similarity > 0)]:
        found[hit.author_id] = max(found.get(hit.author_id, -1.0), hit.similarity)
    return found


def _beyond_the_hits(tag_scores: dict[str, float], since_last: dict[str, float], pool: CandidatePool) -> list[str]:
    """The people answering the question's tags most, and the latest answerers, up to the pool's depths."""
    tagged = sorted(tag_scores, key=lambda p: (-tag_scores[p], p))[: pool.tagged]
    recent = sorted(since_last, key=lambda p: (-since_last[p], p))[: pool.recent]
    return [*tagged, *recent]


def _by_person(hits: list[Hit]) -> dict[str, list[Hit]]:
    grouped: dict[str, list[Hit]] = defaultdict(list)
    for hit in hits:
        grouped[hit.author_id].append(hit)
    return dict(grouped)


async def _hits(index: ExpertIndex, query: QuestionQuery, pool: CandidatePool) -> tuple[list[Hit], list[Hit]]:
    scope = {
        "audiences": query.audiences,
        "exclude_authors": query.exclude_authors,
        "exclude_threads": query.exclude_threads,
        "before": query.before,
    }
    dense = index.search(query.tenant, query.vector, limit=pool.dense, **scope)
    if not query.text.strip():
        return await dense, []
    lexical = index.search_lexical(query.tenant, query.text, limit=pool.lexical, **scope)
    return tuple(await asyncio.gather(dense, lexical))


async def _thread_answers(index: ExpertIndex, query: QuestionQuery, dense: list[Hit], lexical: list[Hit]) -> list[Hit]:
    """The answers, as of the question, in the threads of the questions the searches found."""
    threads = dict.fromkeys(h.thread_id for h in [*dense, *lexical] if h.kind is PostKind.QUESTION)
    if not threads:
        return []
    return await index.thread_answers(
        query.tenant,
        list(threads),
        audiences=query.audiences,
        exclude_authors=query.exclude_authors,
        before=query.before,
    )


def _thread_votes(dense: list[Hit], lexical: list[Hit], answers: list[Hit]) -> dict[str, tuple[float, float]]:
    """Balog's document model: a similar question votes for the people who answered it."""
    dense_vote = {h.thread_id: math.exp(SHARPNESS * (h.similarity - 1.0)) for h in dense if h.kind is PostKind.QUESTION}
    top = max((h.similarity for h in lexical), default=0.0)
    lexical_vote = {h.thread_id: h.similarity / top for h in lexical if h.kind is PostKind.QUESTION and top > 0}
    by_dense: dict[str, float] = defaultdict(float)
    by_lexical: dict[str, float] = defaultdict(float)
    for answer in {h.post_id: h for h in answers}.values():
        weight = ACCEPTED_VOTE if answer.accepted else 1.0
        by_dense[answer.author_id] += weight * dense_vote.get(answer.thread_id, 0.0)
        by_lexical[answer.author_id] += weight * lexical_vote.get(answer.thread_id, 0.0)
    people = by_dense.keys() | by_lexical.keys()
    return {p: (math.log1p(10 * by_dense[p]), math.log1p(by_lexical[p])) for p in people}


def _with_question_similarity(answers: list[Hit], dense: list[Hit]) -> list[Hit]:
    """Each answer with its thread question's dense similarity (0 where only the words matched)."""
    similarity = {h.thread_id: h.similarity for h in dense if h.kind is PostKind.QUESTION}
    # Hundreds of answers a question: copied only where the similarity changes (the index gives 0).
    return [a if (s := similarity.get(a.thread_id, 0.0)) == a.similarity else a.at(s) for a in answers]


def _dense_votes(hits: list[Hit]) -> dict[str, tuple[float, float, float]]:
    answers: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    floor = min((h.similarity for h in hits), default=0.0)
    best: dict[str, float] = defaultdict(lambda: floor)
    for hit in {h.post_id: h for h in hits}.values():
        vote = math.exp(SHARPNESS * (hit.similarity - 1.0))
        if hit.kind is PostKind.ANSWER:
            answers[hit.author_id] += vote * (ACCEPTED_VOTE if hit.accepted else 1.0)
            best[hit.author_id] = max(best[hit.author_id], hit.similarity)
        else:
            other[hit.author_id] += vote
    people = answers.keys() | other.keys()
    return {p: (math.log1p(10 * answers[p]), math.log1p(10 * other[p]), best[p]) for p in people}


def _lexical_votes(hits: list[Hit]) -> dict[str, tuple[float, float]]:
    top = max((h.similarity for h in hits), default=0.0)
    if top <= 0:
        return {}
    total: dict[str, float] = defaultdict(float)
    best: dict[str, float] = defaultdict(float)
    for hit in {h.post_id: h for h in hits}.values():
        share = hit.similarity / top
        # A question shows interest; an answer shows expertise.
        total[hit.author_id] += share * (1.0 if hit.kind is PostKind.ANSWER else 0.3)
        best[hit.author_id] = max(best[hit.author_id], share)
    return {p: (math.log1p(total[p]), best[p]) for p in total}
