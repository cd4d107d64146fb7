"""Candidate features read from the index as of a question's time, with the in-memory index."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from services.matcher.counts import RECENT_ANSWERS, DailyCounts
from services.matcher.features import FEATURE_NAMES, CandidatePool, candidate_features
from services.matcher.index.base import Contribution
from services.matcher.query import QuestionQuery
from shared.events import PostKind
from tests.fakes import FakeEmbedder, InMemoryIndex

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, tzinfo=UTC)
EMBEDDER = FakeEmbedder()
# The people behind the hits only: these tests are about what the searches find.
POOL = CandidatePool(dense=50, lexical=50, tagged=0, recent=0)


def contribution(pid: str, author: str, text: str, *, days_ago: float, kind=PostKind.ANSWER, tags=("kafka",),
                 accepted=False, audience=("public",), thread: str | None = None) -> Contribution:
    return Contribution(
        tenant="acme", post_id=pid, thread_id=thread or f"t{pid}", author_id=author, kind=kind, title=None, text=text,
        created_at=NOW - timedelta(days=days_ago), vector=EMBEDDER.vector(text), tags=tags, audience=audience,
        accepted=accepted,
    )


def query(text: str, **kw) -> QuestionQuery:
    return QuestionQuery(tenant="acme", vector=EMBEDDER.vector(text), text=text, tags=kw.pop("tags", ("kafka",)),
                         now=kw.pop("now", NOW), **kw)


@pytest.fixture
async def index():
    index = InMemoryIndex()
    await index.upsert([
        contribution("1", "ana", "kafka consumer lag grows", days_ago=10, accepted=True),
        contribution("2", "ana", "kafka partitions and consumer groups", days_ago=200),
        contribution("3", "bo", "kafka broker disk full", days_ago=400, tags=("ops",)),
        contribution("4", "cy", "why is my kafka consumer slow", days_ago=5, kind=PostKind.QUESTION),
        contribution("5", "di", "sourdough starter feeding", days_ago=3, tags=("baking",)),
        contribution("6", "ana", "kafka consumer lag after the question", days_ago=-1),  # the future
    ])
    return index


def row(table, person: str) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, table.values[table.people.index(person)], strict=True))


async def test_people_who_wrote_about_the_question_are_candidates_with_their_evidence(index):
    table = await candidate_features(index, query("kafka consumer lag"), pool=POOL)
    assert {"ana", "bo", "cy"} <= set(table.people)
    assert table.dense_hits["ana"][0].post_id == "1"
    assert row(table, "ana")["dense_answers"] > row(table, "bo")["dense_answers"]
    # cy only asked: interest, not yet expertise.
    assert row(table, "cy")["dense_answers"] == 0 and row(table, "cy")["dense_other"] > 0


async def test_activity_acceptance_and_tags_are_counted_as_of_the_question(index):
    table = await candidate_features(index, query("kafka consumer lag"), pool=POOL)
    ana, bo = row(table, "ana"), row(table, "bo")
    assert ana["recent_7"] == 0 and ana["recent_30"] > 0 and ana["recent_90"] == ana["recent_30"]
    assert ana["answers"] > ana["recent_90"]
    assert bo["recent_90"] == 0 and bo["answers"] > 0
    assert ana["accepted"] > 0 and bo["accepted"] == 0
    assert ana["tags"] > 0 and bo["tags"] == 0


async def test_since_last_counts_the_tenants_answers_after_each_persons_latest(index):
    # Answers before NOW, newest first: di (3 days ago), ana (10), ana (200), bo (400). cy only asked.
    table = await candidate_features(index, query("kafka consumer lag"), pool=POOL)
    ana, bo, cy = row(table, "ana"), row(table, "bo"), row(table, "cy")
    assert ana["since_last"] == pytest.approx(-math.log1p(2))
    assert bo["since_last"] == pytest.approx(-math.log1p(4))
    assert cy["since_last"] == pytest.approx(-math.log1p(2 * RECENT_ANSWERS))  # never answered
    # Two fresh answers by bo, after the question: as of a later question he is the latest answerer.
    await index.upsert([contribution("8", "bo", "kafka broker restart", days_ago=-3, tags=("ops",)),
                        contribution("9", "bo", "kafka consumer lag fix", days_ago=-4)])
    assert (
        row(await candidate_features(index, query("kafka consumer lag"), pool=POOL), "bo")["since_last"]
        == bo["since_last"]
    )
    later = await candidate_features(index, query("kafka consumer lag", now=NOW + timedelta(days=5)), pool=POOL)
    assert row(later, "bo")["since_last"] == pytest.approx(-math.log1p(1))
    assert row(later, "ana")["since_last"] == pytest.approx(-math.log1p(3))  # bo's two, then ana's answer 6


async def test_an_answer_earlier_on_the_questions_own_day_counts_at_once(index):
    daily = DailyCounts(index)
    noon = NOW + timedelta(hours=12)
    before = await candidate_features(index, query("kafka consumer lag", now=noon), pool=POOL, daily=daily)
    await index.upsert([contribution("10", "cy", "kafka consumer lag: check the fetch size", days_ago=-0.25)])

    after = await candidate_features(index, query("kafka consumer lag", now=noon), pool=POOL, daily=daily)

    assert row(before, "cy")["since_last"] == pytest.approx(-math.log1p(2 * RECENT_ANSWERS))
    assert row(after, "cy")["since_last"] == pytest.approx(-math.log1p(1))
    assert row(after, "ana")["since_last"] == pytest.approx(-math.log1p(3))  # after cy and di


async def test_nothing_after_the_question_counts(index):
    later = await candidate_features(index, query("kafka consumer lag", now=NOW + timedelta(days=2)), pool=POOL)
    now = await candidate_features(index, query("kafka consumer lag"), pool=POOL)
    assert "6" in [h.post_id for h in later.dense_hits["ana"]]
    assert "6" not in [h.post_id for h in now.dense_hits["ana"]]
    assert row(later, "ana")["answers"] > row(now, "ana")["answers"]


async def test_excluded_people_and_threads_and_unseen_audiences_give_no_candidates(index):
    await index.upsert([contribution("7", "eve", "kafka consumer lag secrets", days_ago=1, audience=("platform",))])
    table = await candidate_features(
        index, query("kafka consumer lag", audiences=("public",), exclude_authors=("ana",), exclude_threads=("t3",)),
        pool=POOL,
    )
    assert "ana" not in table.people and "bo" not in table.people and "eve" not in table.people
    assert "cy" in table.people


async def test_an_empty_tenant_has_no_candidates():
    table = await candidate_features(InMemoryIndex(), query("kafka"), pool=POOL)
    assert table.people == [] and table.values.shape == (0, len(FEATURE_NAMES))


class CountingIndex(InMemoryIndex):
    """The in-memory index, counting the facet calls it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.facets = 0

    async def author_counts(self, tenant, **where):
        self.facets += 1
        return await super().author_counts(tenant, **where)


async def test_questions_of_one_day_share_its_counts_which_stop_at_the_start_of_the_day():
    index = CountingIndex()
    await index.upsert([
        contribution("1", "ana", "kafka consumer lag grows", days_ago=10),
        contribution("2", "bo", "kafka consumer lag today", days_ago=-2 / 24),  # 2 am on the day
    ])
    daily = DailyCounts(index)
    morning, evening = NOW + timedelta(hours=8), NOW + timedelta(hours=20)

    first = await candidate_features(index, query("kafka consumer lag", now=morning), pool=POOL, daily=daily)
    calls = index.facets
    second = await candidate_features(index, query("kafka lag", now=evening), pool=POOL, daily=daily)

    assert index.facets == calls  # the second question of the day reads no counts
    # bo's post from this morning is found, but counts as activity only from the next day on.
    assert "bo" in second.people and row(second, "bo")["answers"] == 0 and row(first, "ana")["answers"] > 0


async def test_a_similar_question_votes_for_the_people_who_answered_it_accepted_more():
    # Answers that say little themselves (an empty body), as in many dumps: only their thread names the topic.
    index = InMemoryIndex()
    await index.upsert([
        contribution("q1", "cy", "kafka consumer lag keeps growing", days_ago=30, kind=PostKind.QUESTION, thread="t1"),
        contribution("a1", "ana", "", days_ago=29, thread="t1", accepted=True),
        contribution("a2", "bo", "", days_ago=29, thread="t1"),
        contribution("q2", "cy", "sourdough starter feeding", days_ago=30, kind=PostKind.QUESTION, thread="t2"),
        contribution("a3", "di", "", days_ago=29, thread="t2", accepted=True),
        contribution("a4", "eve", "", days_ago=29, thread="t1", audience=("hr",)),
        contribution("a5", "fay", "", days_ago=-1, thread="t1"),  # after the question
    ])

    table = await candidate_features(index, query("kafka consumer lag", audiences=("public",)), pool=POOL)

    ana, bo, di = row(table, "ana"), row(table, "bo"), row(table, "di")
    assert ana["thread_dense"] > bo["thread_dense"] > di["thread_dense"] >= 0
    assert ana["thread_lexical"] > bo["thread_lexical"] > 0 and di["thread_lexical"] == 0
    assert "eve" not in table.people and "fay" not in table.people
    # Their answer in the similar thread is their evidence, with that thread's similarity.
    [evidence] = table.thread_hits["ana"]
    assert evidence.post_id == "a1" and evidence.similarity > 0.5


async def test_beyond_the_hits_the_pool_takes_the_tags_busiest_answerers_and_the_latest():
    index = InMemoryIndex()
    await index.upsert([
        contribution("1", "ana", "kafka consumer lag grows", days_ago=10),
        contribution("2", "tagged", "partition rebalancing explained", days_ago=300),  # kafka, far from the words
        contribution("3", "tagged", "offsets and retention", days_ago=320),
        contribution("4", "latest", "sourdough starter", days_ago=1, tags=("baking",)),
        contribution("5", "older", "sourdough flour", days_ago=900, tags=("baking",)),
        contribution("6", "asker", "kafka again", days_ago=2),
    ])
    deeper = CandidatePool(dense=1, lexical=0, tagged=5, recent=2)

    table = await candidate_features(index, query("kafka consumer lag", exclude_authors=("asker",)), pool=deeper)

    assert set(table.people) == {"ana", "tagged", "latest"}
    assert row(table, "tagged")["tags"] > 0 and row(table, "tagged")["dense_answers"] == 0
    assert row(table, "latest")["since_last"] > row(table, "ana")["since_last"]
    # Only answers among the hits measure how close someone is; the others get measured when ranked.
    assert set(table.closeness) == {"ana"}
