"""Per-tenant models learned from the tenant's own past questions, retrained as answers are accepted.

`History` remembers the questions this matcher indexed and who answered them acceptably (posts of
one thread share a Kafka partition, so the replica that saw a question also sees its answers).
`Trainer` turns that history into examples, features read from the index as of each question's
time, and refits in the background: ranking never waits for it, and only the past trains.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from services.matcher.counts import DailyCounts
from services.matcher.features import CandidatePool, candidate_features
from services.matcher.index.base import Contribution, ExpertIndex, Hit, IndexUnavailable
from services.matcher.query import QuestionQuery
from services.matcher.scorer import Example, FitSettings, LinearScorer, fit, fusion_scorer
from services.matcher.texts import contribution_text, visible_to

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PastQuestion:
    """A question as it was asked: what the ranking would have seen then."""

    tenant: str
    post_id: str
    thread_id: str
    asker: str
    created_at: datetime
    vector: Sequence[float]
    text: str
    tags: tuple[str, ...]
    audiences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrainingPolicy:
    """When a tenant gets a learned model, and how often and on how much it is refit."""

    min_examples: int = 50
    retrain_every: int = 50
    window: int = 600  # the most recent accepted questions a fit learns from
    history: int = 20_000  # questions remembered per tenant
    fit_settings: FitSettings = field(default_factory=FitSettings)


class History:
    """Questions and their accepted answerers, per tenant, oldest forgotten first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._questions: dict[str, OrderedDict[str, PastQuestion]] = defaultdict(OrderedDict)
        self._accepted: dict[str, dict[str, str]] = defaultdict(dict)

    def question(self, question: PastQuestion) -> None:
        questions = self._questions[question.tenant]
        questions[question.thread_id] = question
        while len(questions) > self._limit:
            thread_id, _ = questions.popitem(last=False)
            self._accepted[question.tenant].pop(thread_id, None)

    def accepted(self, tenant: str, thread_id: str, answerer: str) -> None:
        self._accepted[tenant][thread_id] = answerer

    def restore(self, question: PastQuestion, answerer: str) -> None:
        """A labelled question read back from the index; what this process saw itself stays as it is."""
        if question.thread_id not in self._questions[question.tenant]:
            self.question(question)
            self._accepted[question.tenant].setdefault(question.thread_id, answerer)

    def tags(self, tenant: str, thread_id: str) -> tuple[str, ...]:
        """A thread's tags, if its question passed through here."""
        question = self._questions[tenant].get(thread_id)
        return question.tags if question else ()

    def delete(self, tenant: str, post_id: str) -> None:
        for thread_id, question in list(self._questions[tenant].items()):
            if question.post_id == post_id:
                del self._questions[tenant][thread_id]
                self._accepted[tenant].pop(thread_id, None)

    def erase(self, tenant: str, person_id: str) -> None:
        for thread_id, question in list(self._questions[tenant].items()):
            if question.asker == person_id:
                del self._questions[tenant][thread_id]
        for thread_id, answerer in list(self._accepted[tenant].items()):
            if answerer == person_id:
                del self._accepted[tenant][thread_id]

    def labelled(self, tenant: str) -> list[tuple[PastQuestion, str]]:
        """Questions with an accepted answer by someone else than the asker, oldest first."""
        questions = self._questions[tenant]
        pairs = [(questions[t], a) for t, a in self._accepted[tenant].items() if t in questions]
        pairs = [(q, a) for q, a in pairs if a != q.asker]
        return sorted(pairs, key=lambda pair: (pair[0].created_at, pair[0].post_id))


class Trainer:
    """Each tenant's current scorer: the hand-set fusion until enough history, then a learned one."""

    def __init__(
        self, *, index: ExpertIndex, history: History, pool: CandidatePool, policy: TrainingPolicy, daily: DailyCounts
    ) -> None:
        self._index = index
        self._daily = daily
        self._history = history
        self._pool = pool
        self._policy = policy
        self._scorers: dict[str, LinearScorer] = {}
        self._trained_on: dict[str, int] = defaultdict(int)
        self._examples: dict[str, dict[tuple[str, str], Example | None]] = defaultdict(dict)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._restored: set[str] = set()
        self.fit_seconds: list[float] = []

    def scorer(self, tenant: str) -> LinearScorer:
        return self._scorers.get(tenant) or fusion_scorer()

    def schedule(self, tenant: str) -> asyncio.Task[None] | None:
        """Start a refit in the background if one is due; the running one if any."""
        running = self._tasks.get(tenant)
        if running is not None and not running.done():
            return running
        labelled = len(self._history.labelled(tenant))
        due = (
            labelled >= self._policy.min_examples and labelled - self._trained_on[tenant] >= self._policy.retrain_every
        )
        if not due:
            return None
        task = asyncio.create_task(self._retrain(tenant), name=f"retrain-{tenant}")
        self._tasks[tenant] = task
        return task

    async def settle(self, tenant: str) -> None:
        """Refit now if due and wait for it: replays use this so every question sees its past's model."""
        task = self.schedule(tenant)
        if task is not None:
            await task

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def restore(self, tenant: str) -> None:
        """Once per tenant and process: its latest accepted questions, read back from the index.

        The history to learn from is otherwise only what this process consumed: after a restart,
        or on a replica whose partitions hold few of the tenant's threads, the tenant would rank
        with the hand-set fusion until 50 more questions had accepted answers.
        """
        if tenant in self._restored:
            return
        self._restored.add(tenant)
        try:
            found = await self._index.accepted_questions(tenant, limit=self._policy.window)
        except IndexUnavailable:
            self._restored.discard(tenant)  # the next question tries again
            log.warning("could not read %s's past questions back from the index", tenant, exc_info=True)
            return
        for accepted in found:
            question = past_question(
                accepted.question, tenant=tenant, vector=accepted.vector, audience=accepted.audience
            )
            self._history.restore(question, accepted.answerer)
        log.info("read back %d past questions of %s with an accepted answer", len(found), tenant)

    async def examples(self, tenant: str, post_ids: Collection[str]) -> dict[str, Example | None]:
        """The examples the questions `post_ids` make, those with an accepted answer, as of their own time.

        None where the accepted answerer was not among the candidates. Evaluation uses this to
        fit on the test questions themselves: how far weights alone could take these features.
        """
        return {
            q.post_id: await self._example(q, a) for q, a in self._history.labelled(tenant) if q.post_id in post_ids
        }

    def forget(self, tenant: str) -> None:
        """Drop cached examples (after an erasure): the next refit reads them afresh from the index."""
        self._examples.pop(tenant, None)

    def _keep_only(self, tenant: str, keys: set[tuple[str, str]]) -> None:
        cache = self._examples[tenant]
        for key in [k for k in cache if k not in keys]:
            del cache[key]

    async def _retrain(self, tenant: str) -> None:
        labelled = self._history.labelled(tenant)
        started = time.perf_counter()
        try:
            examples = [await self._example(q, answerer) for q, answerer in labelled[-self._policy.window :]]
        except Exception:
            # The current model keeps ranking; the next due check tries again.
            log.warning("retraining %s failed; keeping its current model", tenant, exc_info=True)
            return
        self._keep_only(tenant, {(q.post_id, a) for q, a in labelled[-self._policy.window :]})
        usable = [e for e in examples if e is not None]
        if len(usable) < self._policy.min_examples:
            # Too few answerers were candidates (a backfill still arriving, say): the next due check
            # tries again, reusing the examples already read.
            log.info("%s: %d usable examples of %d, too few to learn from yet", tenant, len(usable), len(labelled))
            return
        self._scorers[tenant] = await asyncio.to_thread(fit, usable, self._policy.fit_settings)
        self._trained_on[tenant] = len(labelled)
        self.fit_seconds.append(time.perf_counter() - started)
        log.info("retrained %s on %d examples in %.2f s", tenant, len(usable), self.fit_seconds[-1])

    async def _example(self, question: PastQuestion, answerer: str) -> Example | None:
        """The question's candidates as of its own time, or None if its answerer was not among them."""
        key = (question.post_id, answerer)
        cache = self._examples[question.tenant]
        if key not in cache:
            query = QuestionQuery(
                tenant=question.tenant,
                vector=question.vector,
                text=question.text,
                tags=question.tags,
                now=question.created_at,
                audiences=question.audiences,
                exclude_authors=(question.asker,),
                exclude_threads=(question.thread_id,),
            )
            table = await candidate_features(self._index, query, pool=self._pool, daily=self._daily)
            positive = table.people.index(answerer) if answerer in table.people else None
            cache[key] = None if positive is None else Example(values=table.values, positive=positive)
        return cache[key]


def past_question(
    question: Hit | Contribution, *, tenant: str, vector: Sequence[float], audience: Sequence[str]
) -> PastQuestion:
    """A question as learning sees it, from the contribution just indexed or a hit read back."""
    return PastQuestion(
        tenant=tenant,
        post_id=question.post_id,
        thread_id=question.thread_id,
        asker=question.author_id,
        created_at=question.created_at,
        vector=np.asarray(vector, dtype=np.float32),
        text=contribution_text(question.title, question.text),
        tags=question.tags,
        audiences=tuple(visible_to(audience)),
    )
