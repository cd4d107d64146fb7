"""The baselines expertmatch is measured against, fed by the same replay: most_active and bm25."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence

import bm25s
import numpy as np

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

    The index is rebuilt from the past questions whenever new ones arrived before a test
    question, so its term statistics never include a later post.
    """

    name = "bm25"

    def __init__(self, *, documents: int = BM25_DOCUMENTS) -> None:
        self._documents = documents
        self._question_ids: list[str] = []
        self._tokens: list[list[str]] = []
        self._answerers: dict[str, list[str]] = defaultdict(list)
        self._retriever: bm25s.BM25 | None = None
        self._stale = True
        self.build_seconds = 0.0
        self.builds = 0

    async def observe(self, posts: Sequence[DumpPost]) -> None:
        for post in posts:
            if post.kind == "question":
                self._question_ids.append(post.id)
                self._tokens.append(question_tokens(post))
                self._stale = True
            else:
                self._answerers[post.thread_id].append(post.author_id)

    async def rank(self, question: DumpPost, *, limit: int) -> list[str]:
        terms = question_tokens(question)
        if not self._question_ids or not terms:
            return []
        scores = self._retriever_now().get_scores(terms)
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

    def _retriever_now(self) -> bm25s.BM25:
        if self._stale or self._retriever is None:
            started = time.perf_counter()
            retriever = bm25s.BM25()
            retriever.index(self._tokens, show_progress=False)
            self._retriever, self._stale = retriever, False
            self.build_seconds += time.perf_counter() - started
            self.builds += 1
        return self._retriever
