"""most_active and bm25 on tiny hand-made replays, and bm25's growing index against bm25s rebuilt."""

from __future__ import annotations

from collections import Counter

import bm25s
import numpy as np
import pytest

from services.evaluation.baselines import Bm25Experts, MostActive, question_tokens
from services.evaluation.bm25 import GrowingBm25
from services.evaluation.replay import replay
from tests.unit.test_eval_replay import a, q

pytestmark = pytest.mark.unit

PAST = [
    q(1, "ann", "sourdough starter feeding schedule"),
    a(2, "bob", 1, "twice a day"),
    a(3, "cat", 1, "once a day is fine"),
    q(4, "dan", "espresso grind size for a burr grinder"),
    a(5, "cat", 4, "go finer"),
    q(6, "eve", "espresso tamping pressure"),
    a(7, "cat", 6, "about 15 kg"),
    a(8, "ann", 6, "consistency beats pressure"),
]


async def test_most_active_ranks_by_answers_so_far_and_skips_the_asker():
    system = MostActive()
    await system.observe(PAST)
    assert await system.rank(q(9, "zed", "anything"), limit=10) == ["cat", "ann", "bob"]
    assert await system.rank(q(9, "cat", "anything"), limit=2) == ["ann", "bob"]


async def test_bm25_votes_matching_past_questions_to_their_answerers():
    system = Bm25Experts()
    await system.observe(PAST)
    ranked = await system.rank(q(9, "zed", "best grind for espresso"), limit=10)
    # Only cat answered espresso questions matching "grind" and "espresso"; ann matches one.
    assert ranked[:2] == ["cat", "ann"]
    assert "bob" not in ranked


async def test_bm25_combsum_adds_the_votes_of_several_questions():
    system = Bm25Experts()
    await system.observe(PAST)
    # "espresso" matches two questions: cat answered both, ann one of them.
    ranked = await system.rank(q(9, "zed", "espresso"), limit=10)
    assert ranked == ["cat", "ann"]


async def test_bm25_never_counts_answers_that_arrive_after_the_question():
    system = Bm25Experts()
    posts = [*PAST, q(9, "zed", "sourdough starter feeding"), a(10, "fay", 9, "feed it flour"),
             q(11, "gus", "sourdough starter feeding again")]
    result = await replay(posts, [system], test_fraction=0.4)  # the last 2 of 5 questions
    rankings = {j.question_id: j.rankings["bm25"] for j in result.judged}
    # When question 9 was asked, fay had not answered anything yet.
    assert "fay" not in rankings["9"]
    assert set(rankings["9"]) == {"bob", "cat"}
    # By question 11, fay's answer to 9 counts, and 9 is in the index.
    assert "fay" in rankings["11"]


def random_documents(count: int, *, seed: int) -> list[list[str]]:
    """Documents of Zipf-distributed words, lengths 0 to 60, so some terms are common and some rare."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(400)]
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    return [list(rng.choice(vocabulary, size=int(rng.integers(0, 60)), p=weights)) for _ in range(count)]


def test_the_growing_index_scores_exactly_as_a_bm25s_index_rebuilt_for_each_query():
    documents, queries = random_documents(300, seed=1), random_documents(300, seed=2)
    growing = GrowingBm25()
    for step, (document, query) in enumerate(zip(documents, queries, strict=True)):
        growing.add(document)
        # A repeated term counts twice; a word no document has counts for nothing.
        query = [*query, *query[:2], "never-seen"]
        if step % 10 and step > 5:
            continue
        rebuilt = bm25s.BM25()
        rebuilt.index(documents[: step + 1], show_progress=False)
        expected = rebuilt.get_scores(query) if rebuilt.get_tokens_ids(query) else np.zeros(step + 1, np.float32)

        got = growing.scores(query)

        assert got.dtype == np.float32 and np.array_equal(got, expected), f"after {step + 1} documents"
        assert np.array_equal(np.argsort(-got, kind="stable"), np.argsort(-expected, kind="stable"))


class RebuiltBm25Experts(Bm25Experts):
    """The baseline as it was: a bm25s index rebuilt over the past questions before each ranking."""

    name = "bm25-rebuilt"

    async def rank(self, question, *, limit):
        terms = question_tokens(question)
        if not self._question_ids or not terms:
            return []
        retriever = bm25s.BM25()
        retriever.index([question_tokens(p) for p in self.questions], show_progress=False)
        scores = retriever.get_scores(terms)
        top = np.argsort(-scores, kind="stable")[: self._documents]
        votes: Counter[str] = Counter()
        for doc in top:
            if scores[doc] <= 0:
                break
            for person in set(self._answerers.get(self._question_ids[doc], ())):
                votes[person] += float(scores[doc])
        votes.pop(question.author_id, None)
        return [person for person, _ in sorted(votes.items(), key=lambda item: (-item[1], item[0]))[:limit]]

    async def observe(self, posts):
        self.questions = [*getattr(self, "questions", []), *(p for p in posts if p.kind == "question")]
        await super().observe(posts)


async def test_bm25_ranks_people_exactly_as_when_it_rebuilt_its_index_for_every_question():
    words = random_documents(240, seed=3)
    posts, pid = [], 0
    for n in range(60):
        pid += 1
        thread = pid
        posts.append(q(thread, f"asker{n % 7}", " ".join(words[4 * n]), " ".join(words[4 * n + 1])))
        for k in range(1 + n % 3):
            pid += 1
            posts.append(a(pid, f"expert{(n * 5 + k) % 11}", thread, " ".join(words[4 * n + 2 + k % 2])))

    growing, rebuilt = Bm25Experts(), RebuiltBm25Experts()
    result = await replay(posts, [growing, rebuilt], test_fraction=0.5, depth=20)

    assert result.judged and all(j.rankings["bm25"] for j in result.judged)
    assert [j.rankings["bm25"] for j in result.judged] == [j.rankings[rebuilt.name] for j in result.judged]
