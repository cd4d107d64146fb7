"""Candidate people for a question and their features, read from the index as of the question's time.

Every read is bounded in time: searches to the question's moment, per-author counts to the start
of its day. So the features of a past question are what the index held when it was asked: live
ranking and training examples for learning to rank come from one function.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from services.matcher.index.base import ExpertIndex, FeedbackHit, Hit
from shared.events import PostKind, TagRecord, TrackRecord

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
    "dense_answers": "similarity",
    "dense_other": "similarity",
    "dense_best": "similarity",
    "lexical": "lexical",
    "lexical_best": "lexical",
    "recent_7": "activity",
    "recent_30": "activity",
    "recent_90": "activity",
    "answers": "answers",
    "accepted": "accepted",
    "acceptance": "accepted",
    "tags": "tags",
    "thread_dense": "similarity",
    "thread_lexical": "lexical",
    "since_last": "activity",
    "recent_share": "activity",
}
# Short windows: a facet over a narrow time range is cheap, and `answers` covers all time.
RECENT_DAYS = (7, 30, 90)
# At 6, a hit at similarity 0.8 votes like ten at 0.42: many good matches beat one lucky one.
SHARPNESS = 6.0
MAX_TAGS = 3  # one facet call each
# Responses to invitations on the questions closest to this one. A response fades to nothing at
# REACH (a cosine similarity): a "not my area" is about that topic, not about the person everywhere.
# Measured on the se-* replays: answered reaching further (0.2-0.3) helped beer but cost
# quantumcomputing as much; a response reaching everywhere (0.0) cost beer 15% of its MRR.
FEEDBACK_DEPTH = 50
REACH = 0.5
# A question this close is "like this one" in a track record: a "not my area" there counts fully.
NEARBY = 0.75
# What each response says of the person near that question: answering shows it most.
RESPONSE_WEIGHTS = {"answered": (1.0, 0.0), "accepted": (0.5, 0.0), "declined": (0.0, 0.0), "not_my_area": (0.0, 1.0)}
# Timestamps are compared to the second: what was stored in the question's own second was there.
_SAME_SECOND = timedelta(seconds=1)
_ANSWER = (PostKind.ANSWER,)
# How far back to look for each person's latest answer, in the tenant's answers (one ordered scroll).
# Counted in answers, not days, it means the same on a busy tenant and a quiet one. On the eval
# replays, "answered N answers ago" lifted dba MRR 0.231 -> 0.246, beer 0.237 -> 0.256 and
# quantumcomputing 0.455 -> 0.473 (physics 0.157 -> 0.156); day windows alone missed it.
RECENT_ANSWERS = 2000
_LONG_AGO = -math.log1p(2 * RECENT_ANSWERS)
# An accepted answer in a similar thread says more than any other answer there.
ACCEPTED_VOTE = 1.5


@dataclass(frozen=True, slots=True)
class QuestionQuery:
    """A question as the ranking sees it, at the moment it was asked."""

    tenant: str
    vector: Sequence[float]
    text: str
    tags: tuple[str, ...]
    now: datetime
    audiences: Sequence[str] | None = None
    exclude_authors: Sequence[str] = ()
    exclude_threads: Sequence[str] = ()

    @property
    def day(self) -> datetime:
        """The start of the question's day (UTC): the as-of instant of its counts."""
        moment = self.now.astimezone(UTC)
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)

    @property
    def before(self) -> datetime:
        """The index's as-of bound: the question's own thread is excluded, so nothing of it leaks."""
        return self.now + _SAME_SECOND


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
        answered, refused = self.nearby.get(person, (0, 0))
        return self.counts.of(person).model_copy(update={"answered_nearby": answered, "not_my_area_nearby": refused})


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


class DailyCounts:
    """Whole-tenant answer counts, and the latest answerers, as of the start of a question's day (UTC), memoised.

    The questions of one day share them, so the slow facet counts and the long scroll run about
    once a day per tenant and filter; an entry lives `ttl` seconds, so a late backfill shows
    within minutes.
    """

    def __init__(self, index: ExpertIndex, *, size: int = 512, ttl: float = 300.0) -> None:
        self._index = index
        self._size = size
        self._ttl = ttl
        self._memo: OrderedDict[tuple, tuple[float, Any]] = OrderedDict()

    async def answers(self, tenant: str, day: datetime, *, days: int | None = None, **where) -> dict[str, int]:
        """Answers per author created before `day` (in the `days` before it, if given)."""
        after = day - timedelta(days=days) if days is not None else None
        return await self._memoised(
            (tenant, day, days, tuple(sorted(where.items()))),
            lambda: self._index.author_counts(tenant, kinds=_ANSWER, after=after, before=day, **where),
        )

    async def recent_authors(self, tenant: str, day: datetime) -> list[str]:
        """The authors of the tenant's latest RECENT_ANSWERS answers created before `day`, newest first."""
        return await self._memoised(
            (tenant, day, "recent"),
            lambda: self._index.recent_authors(tenant, kinds=_ANSWER, before=day, limit=RECENT_ANSWERS),
        )

    async def _memoised(self, key: tuple, read: Callable[[], Awaitable[Any]]) -> Any:
        cached = self._memo.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            self._memo.move_to_end(key)
            return cached[1]
        value = await read()
        self._memo[key] = (time.monotonic(), value)
        while len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return value


async def candidate_features(
    index: ExpertIndex, query: QuestionQuery, *, pool: CandidatePool, daily: DailyCounts | None = None
) -> FeatureTable:
    """The candidates for `query` and their features, everything as of `query.now`."""
    dense, lexical = await _hits(index, query, pool)
    answers = await _thread_answers(index, query, dense, lexical)
    excluded = set(query.exclude_authors)
    found = dict.fromkeys(h.author_id for h in [*dense, *lexical, *answers])
    if not found:
        return FeatureTable(people=[], values=np.zeros((0, len(FEATURE_NAMES))))
    daily = daily or DailyCounts(index)
    counts = await _count(daily, query)
    tag_scores = _tag_scores(counts)
    since_last = await _since_last_answer(index, daily, query)
    for person in _beyond_the_hits(tag_scores, since_last, pool):
        found.setdefault(person)
    people = [p for p in found if p not in excluded]
    if not people:
        return FeatureTable(people=[], values=np.zeros((0, len(FEATURE_NAMES))))
    dense_votes = _dense_votes(dense)
    lexical_votes = _lexical_votes(lexical)
    thread_votes = _thread_votes(dense, lexical, answers)
    # Someone with no answer among the hits is at most as close as the farthest hit.
    floor = min((h.similarity for h in dense), default=0.0)
    rows = [
        [
            *dense_votes.get(person, (0.0, 0.0, floor)),
            *lexical_votes.get(person, (0.0, 0.0)),
            *(math.log1p(counts.recent[days].get(person, 0)) for days in RECENT_DAYS),
            math.log1p(counts.answers.get(person, 0)),
            math.log1p(counts.accepted.get(person, 0)),
            counts.accepted.get(person, 0) / (counts.answers.get(person, 0) + 5.0),
            tag_scores.get(person, 0.0),
            *thread_votes.get(person, (0.0, 0.0)),
            since_last.get(person, _LONG_AGO),
            counts.recent[90].get(person, 0) / (counts.answers.get(person, 0) + 1.0),
        ]
        for person in people
    ]
    thread_hits = _with_question_similarity(answers, dense)
    return FeatureTable(
        people=people,
        values=np.asarray(rows, dtype=float),
        dense_hits=_by_person(dense),
        lexical_hits=_by_person(lexical),
        thread_hits=_by_person(thread_hits),
        counts=counts,
        closeness=_closeness(dense, thread_hits),
    )


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
    """Per person: how many questions at cosine NEARBY or closer they answered when invited, and called not their area."""
    near = [h for h in hits if h.similarity >= NEARBY]
    answered = {(h.person_id, h.question_post_id) for h in near if h.response == "answered"}
    refused = {(h.person_id, h.question_post_id) for h in near if h.response == "not_my_area"} - answered
    answers, refusals = Counter(p for p, _ in answered), Counter(p for p, _ in refused)
    return {person: (answers[person], refusals[person]) for person in answers | refusals}


def _feedback(hits: list[FeedbackHit]) -> dict[str, tuple[float, float]]:
    """Per person: how much their responses near this question speak for and against them.

    A response counts by its question's closeness: 1 for the same question, falling linearly to 0
    at REACH. A person's total is the strongest response plus a tenth of the rest, capped at
    1, so many distant responses never outweigh one on the same question. Where they answered a
    question, what else they said about it counts for nothing.
    """
    answered = {(h.person_id, h.question_post_id) for h in hits if h.response == "answered"}
    found: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for hit in hits:
        if hit.response != "answered" and (hit.person_id, hit.question_post_id) in answered:
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
    dense = await index.search(query.tenant, query.vector, limit=pool.dense, **scope)
    lexical = await index.search_lexical(query.tenant, query.text, limit=pool.lexical, **scope) if query.text.strip() else []
    return dense, lexical


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
    return [replace(a, similarity=similarity.get(a.thread_id, 0.0)) for a in answers]


@dataclass(frozen=True, slots=True)
class AnswerCounts:
    """Per-author answer counts of the whole tenant as of the question's day: activity, acceptance, tags."""

    answers: dict[str, int]
    accepted: dict[str, int]
    recent: dict[int, dict[str, int]]  # by window in days
    tagged: dict[str, tuple[dict[str, int], dict[str, int]]]  # by question tag: answers, accepted

    @property
    def total_answers(self) -> int:
        return sum(self.answers.values())

    def of(self, person: str) -> TrackRecord:
        tags = [
            TagRecord(tag=tag, answers=answers[person], accepted=accepted.get(person, 0))
            for tag, (answers, accepted) in self.tagged.items()
            if answers.get(person, 0) > 0
        ]
        return TrackRecord(
            answers=self.answers.get(person, 0),
            accepted=self.accepted.get(person, 0),
            answers_last_30_days=self.recent[30].get(person, 0),
            answers_last_90_days=self.recent[90].get(person, 0),
            tags=tuple(sorted(tags, key=lambda t: (-t.answers, t.tag))),
        )


async def _count(daily: DailyCounts, query: QuestionQuery) -> AnswerCounts:
    # Whole-tenant counts: restricting them to the candidates (a long MatchAny) costs as much or more.
    day = query.day
    answers = await daily.answers(query.tenant, day)
    accepted = await daily.answers(query.tenant, day, accepted=True)
    recent = {days: await daily.answers(query.tenant, day, days=days) for days in RECENT_DAYS}
    tagged = {}
    for tag in list(dict.fromkeys(query.tags))[:MAX_TAGS]:
        tagged[tag] = (
            await daily.answers(query.tenant, day, tags_any=(tag,)),
            await daily.answers(query.tenant, day, tags_any=(tag,), accepted=True),
        )
    return AnswerCounts(answers, accepted, recent, tagged)


async def _since_last_answer(index: ExpertIndex, daily: DailyCounts, query: QuestionQuery) -> dict[str, float]:
    """Per person: -log(1 + how many answers the tenant had since their latest one, theirs counting 1).

    The answers of the question's own day so far are read each time (few); the earlier ones once a day.
    """
    today = await index.recent_authors(
        query.tenant, kinds=_ANSWER, after=query.day, before=query.before, limit=RECENT_ANSWERS
    )
    authors = [*today, *await daily.recent_authors(query.tenant, query.day)][:RECENT_ANSWERS]
    found: dict[str, float] = {}
    for position, author in enumerate(authors, start=1):
        found.setdefault(author, -math.log1p(position))
    return found


def _tag_scores(counts: AnswerCounts) -> dict[str, float]:
    """Per person: sum over the question's tags of rarity(tag) * log(1 + their answers so tagged)."""
    scores: dict[str, float] = defaultdict(float)
    for tagged, _ in counts.tagged.values():
        rarity = math.log1p(counts.total_answers / (1.0 + sum(tagged.values())))
        for person, count in tagged.items():
            scores[person] += rarity * math.log1p(count)
    return scores


def _dense_votes(hits: list[Hit]) -> dict[str, tuple[float, float, float]]:
    answers: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    floor = min((h.similarity for h in hits), default=0.0)
    best: dict[str, float] = defaultdict(lambda: floor)
    for hit in {h.post_id: h for h in hits}.values():
        vote = math.exp(SHARPNESS * (hit.similarity - 1.0))
        if hit.kind is PostKind.ANSWER:
            answers[hit.author_id] += vote * (1.5 if hit.accepted else 1.0)
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
