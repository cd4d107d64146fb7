"""The baselines expertmatch is measured against, fed by the same replay: most_active and bm25."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import bm25s
import numpy as np

from services.evaluation.bm25 import GrowingBm25
from shared.stackexchange import DumpPost
from shared.text import to_plain_text

# Past questions whose answerers share a BM25 vote (Balog's document model).
BM25_DOCUMENTS = 100


class MostActive:
    """People by how many answers they have posted so far."""

    name = "most_active"

    def __init__(self) -> None:
        self._answers: Counter[str] = Counter()

    async def observe(self, posts: Sequence[DumpPost]) -> None:
        self._answers.update(p.author_id for p in posts if p.kind == "answer")

    async def rank(self, question: DumpPost, *, limit: int) -> list[str]:
        ranked = sorted(self._answers.items(), key=lambda item: (-item[1], item[0]))
        return [person for person, _ in ranked if person != question.author_id][:limit]


def question_tokens(post: DumpPost) -> list[str]:
    """A question's title and plain-text body as BM25 terms (lower-cased, English stopwords out)."""
    text = f"{post.title or ''}\n{to_plain_text(post.body)}"
    return bm25s.tokenize([text], stopwords="en", return_ids=False, show_progress=False)[0]


class Bm25Experts:
    """BM25 over past questions; the best `documents` give their score to their answerers (CombSUM).

    The questions' term statistics grow with each one observed, so a question is scored against
    exactly the questions before it (the scores of a bm25s index rebuilt then, without the rebuild).
    """

    name = "bm25"

    def __init__(self, *, documents: int = BM25_DOCUMENTS) -> None:
        self._documents = documents
        self._question_ids: list[str] = []
        self._index = GrowingBm25()
        self._answerers: dict[str, list[str]] = defaultdict(list)
        self.seconds = 0.0

    async def observe(self, posts: Sequence[DumpPost]) -> None:
        started = time.perf_counter()
        for post in posts:
            if post.kind == "question":
                self._question_ids.append(post.id)
                self._index.add(question_tokens(post))
            else:
                self._answerers[post.thread_id].append(post.author_id)
        self.seconds += time.perf_counter() - started

    async def rank(self, question: DumpPost, *, limit: int) -> list[str]:
        terms = question_tokens(question)
        if not self._question_ids or not terms:
            return []
        started = time.perf_counter()
        scores = self._index.scores(terms)
        self.seconds += time.perf_counter() - started
        top = np.argsort(-scores, kind="stable")[: self._documents]
        votes: Counter[str] = Counter()
        for doc in top:
            if scores[doc] <= 0:
                break
            for person in set(self._answerers.get(self._question_ids[doc], ())):
                votes[person] += float(scores[doc])
        votes.pop(question.author_id, None)
        ranked = sorted(votes.items(), key=lambda item: (-item[1], item[0]))
        return [person for person, _ in ranked[:limit]]
