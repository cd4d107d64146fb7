"""One contract for both vector-index adapters: what the matcher relies on, against Edge and the server."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import pytest
from qdrant_client import AsyncQdrantClient
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    KeywordIndexParams,
    Modifier,
    UpdateOperation,
)

from services.matcher.index import (
    Contribution,
    EdgeIndex,
    Feedback,
    Hit,
    IndexUnavailable,
    QdrantServerIndex,
    ShardLocked,
    open_index,
)
from services.matcher.index.edge_shard import compact, shard_config
from shared.events import PostKind, ResponseKind
from tests.fakes import InMemoryIndex

pytestmark = pytest.mark.integration

DIM = 384
WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def vec(*weights: tuple[int, float]) -> list[float]:
    """A 384-d vector with a few non-zero components, e.g. vec((0, 1.0), (1, 0.2))."""
    values = [0.0] * DIM
    for position, weight in weights:
        values[position] = weight
    return values


def contribution(post_id: str, vector: list[float], **fields) -> Contribution:
    defaults = dict(
        tenant="acme",
        post_id=post_id,
        thread_id=f"t-{post_id}",
        author_id="alice",
        kind=PostKind.ANSWER,
        title=None,
        text=f"body of {post_id}",
        created_at=WHEN,
        vector=vector,
    )
    return Contribution(**{**defaults, **fields})


@pytest.fixture(params=["edge", "server"])
async def index(request, tmp_path):
    """A fresh, empty index: an Edge shard in tmp_path, or a collection in qdrant-client local mode."""
    if request.param == "edge":
        opened = await EdgeIndex.open(tmp_path / "index")
    else:
        client = AsyncQdrantClient(location=":memory:")
        opened = await QdrantServerIndex.open(client, f"c-{uuid.uuid4().hex[:8]}")
    yield opened
    await opened.close()


async def test_search_returns_the_closest_first_with_cosine_similarity(index):
    await index.upsert(
        [
            contribution("far", vec((1, 1.0))),
            contribution("near", vec((0, 1.0), (1, 0.3))),
            contribution("opposite", vec((0, -1.0))),
            contribution("exact", vec((0, 2.0))),  # cosine ignores length
        ]
    )

    hits = await index.search("acme", vec((0, 1.0)), limit=10)

    assert [h.post_id for h in hits] == ["exact", "near", "far", "opposite"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert hits[1].similarity == pytest.approx(1 / (1 + 0.3**2) ** 0.5, abs=1e-5)
    assert hits[-1].similarity == pytest.approx(-1.0, abs=1e-5)
    assert all(-1.0 - 1e-6 <= h.similarity <= 1.0 + 1e-6 for h in hits)
    assert len(await index.search("acme", vec((0, 1.0)), limit=2)) == 2


async def test_indexing_a_post_again_overwrites_it(index):
    await index.upsert([contribution("p1", vec((0, 1.0)), title="Old title", score=1)])
    await index.upsert([contribution("p1", vec((1, 1.0)), title="New title", score=7)])

    assert await index.count("acme") == 1
    [hit] = await index.search("acme", vec((1, 1.0)), limit=5)
    assert (hit.title, hit.score) == ("New title", 7)
    assert hit.similarity == pytest.approx(1.0, abs=1e-5)


async def test_tenants_never_see_each_others_contributions(index):
    await index.upsert(
        [
            contribution("p1", vec((0, 1.0)), tenant="acme", author_id="alice"),
            contribution("p2", vec((0, 1.0)), tenant="acme", author_id="ann"),
            # The same post id in another tenant is another point.
            contribution("p1", vec((0, 1.0)), tenant="globex", author_id="gus"),
        ]
    )

    globex = await index.search("globex", vec((0, 1.0)), limit=10)

    assert [(h.post_id, h.author_id) for h in globex] == [("p1", "gus")]
    assert {h.author_id for h in await index.search("acme", vec((0, 1.0)), limit=10)} == {"alice", "ann"}
    assert (await index.count("acme"), await index.count("globex"), await index.count("initech")) == (2, 1, 0)
    # Of given posts only: how an import learns which of the posts it sent are in.
    assert await index.count("acme", ["p1", "p2", "p9"]) == 2
    assert await index.count("globex", ["p1", "p2"]) == 1
    assert await index.count("acme", []) == 0


async def test_a_contributions_link_comes_back_with_it(index):
    link = "https://intranet.example/t/9#p-88"
    await index.upsert([
        contribution("p1", vec((0, 1.0)), author_id="alice", url=link),
        contribution("p2", vec((0, 0.9), (1, 0.1)), author_id="ann"),
    ])

    hits = await index.search("acme", vec((0, 1.0)), limit=10)

    assert [(h.post_id, h.url) for h in hits] == [("p1", link), ("p2", None)]


async def test_audience_filter_keeps_only_visible_contributions(index):
    await index.upsert(
        [
            contribution("public", vec((0, 1.0))),
            contribution("eng", vec((0, 1.0)), audience=("eng",)),
            contribution("hr", vec((0, 1.0)), audience=("hr", "managers")),
        ]
    )

    visible = await index.search("acme", vec((0, 1.0)), limit=10, audiences=["public", "eng"])
    managers = await index.search("acme", vec((0, 1.0)), limit=10, audiences=["managers"])
    unfiltered = await index.search("acme", vec((0, 1.0)), limit=10)

    assert {h.post_id for h in visible} == {"public", "eng"}
    assert [h.post_id for h in managers] == ["hr"]
    assert {h.post_id for h in unfiltered} == {"public", "eng", "hr"}


async def test_search_excludes_authors_and_threads(index):
    await index.upsert(
        [
            contribution("a1", vec((0, 1.0)), author_id="asker", thread_id="t1"),
            contribution("b1", vec((0, 1.0)), author_id="bob", thread_id="t1"),
            contribution("b2", vec((0, 1.0)), author_id="bob", thread_id="t2"),
            contribution("c1", vec((0, 1.0)), author_id="carol", thread_id="t3"),
        ]
    )

    hits = await index.search(
        "acme", vec((0, 1.0)), limit=10, exclude_authors=["asker"], exclude_threads=["t1"]
    )
    without_carol = await index.search("acme", vec((0, 1.0)), limit=10, exclude_authors=["asker", "carol"])

    assert {h.post_id for h in hits} == {"b2", "c1"}
    assert {h.post_id for h in without_carol} == {"b1", "b2"}


async def test_delete_post_removes_only_that_post(index):
    await index.upsert([contribution("p1", vec((0, 1.0))), contribution("p2", vec((0, 1.0)))])
    await index.upsert([contribution("p1", vec((0, 1.0)), tenant="globex")])

    await index.delete_post("acme", "p1")
    await index.delete_post("acme", "never-indexed")

    assert [h.post_id for h in await index.search("acme", vec((0, 1.0)), limit=10)] == ["p2"]
    assert (await index.count("acme"), await index.count("globex")) == (1, 1)


async def test_erase_person_removes_all_their_points_and_says_how_many(index):
    await index.upsert(
        [
            contribution("a1", vec((0, 1.0)), author_id="alice"),
            contribution("a2", vec((1, 1.0)), author_id="alice"),
            contribution("a3", vec((2, 1.0)), author_id="alice"),
            contribution("b1", vec((0, 1.0)), author_id="bob"),
            contribution("g1", vec((0, 1.0)), author_id="alice", tenant="globex"),
        ]
    )

    assert await index.erase_person("acme", "alice") == 3
    assert await index.erase_person("acme", "alice") == 0
    assert [h.author_id for h in await index.search("acme", vec((0, 1.0)), limit=10)] == ["bob"]
    assert (await index.count("acme"), await index.count("globex")) == (1, 1)


async def test_thread_gives_the_question_title_and_the_participants(index):
    await index.upsert(
        [
            contribution("q", vec((0, 1.0)), thread_id="t1", kind=PostKind.QUESTION, title="Why is Kafka lagging?"),
            contribution("a", vec((0, 1.0)), thread_id="t1", author_id="bob", title="Re: lag"),
            contribution("c", vec((0, 1.0)), thread_id="t1", author_id="carol", kind=PostKind.COMMENT),
            contribution("x", vec((0, 1.0)), thread_id="t2", author_id="dave", title="Only a reply"),
            contribution("g", vec((0, 1.0)), thread_id="t1", author_id="gus", tenant="globex"),
        ]
    )

    t1 = await index.thread("acme", "t1")
    t2 = await index.thread("acme", "t2")
    unknown = await index.thread("acme", "t404")

    assert (t1.thread_id, t1.title, t1.participants) == ("t1", "Why is Kafka lagging?", {"alice", "bob", "carol"})
    assert (t2.title, t2.participants) == ("Only a reply", {"dave"})
    assert (unknown.title, unknown.participants) == (None, frozenset())


async def test_payload_comes_back_as_it_went_in(index):
    paris = timezone(timedelta(hours=2))
    await index.upsert(
        [
            contribution(
                "q1",
                vec((0, 1.0)),
                kind=PostKind.QUESTION,
                title="Rotating TLS certificates",
                text="x" * 5_000,
                created_at=datetime(2023, 3, 4, 5, 6, 7, tzinfo=paris),
                tags=("tls", "ops"),
                accepted=True,
                score=12,
            ),
            contribution("naive", vec((1, 1.0)), created_at=datetime(2022, 1, 2, 3, 4, 5)),
        ]
    )

    [hit] = await index.search("acme", vec((0, 1.0)), limit=1)
    [naive] = await index.search("acme", vec((1, 1.0)), limit=1)

    assert (hit.post_id, hit.thread_id, hit.author_id) == ("q1", "t-q1", "alice")
    assert hit.kind is PostKind.QUESTION
    assert hit.title == "Rotating TLS certificates"
    assert hit.tags == ("tls", "ops")
    assert (hit.accepted, hit.score) == (True, 12)
    assert hit.created_at == datetime(2023, 3, 4, 3, 6, 7, tzinfo=UTC)
    assert hit.created_at.tzinfo is not None
    assert 1_000 <= len(hit.text) <= 2_000 and set(hit.text) == {"x"}
    assert naive.created_at == datetime(2022, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (naive.title, naive.tags, naive.accepted, naive.kind) == (None, (), False, PostKind.ANSWER)


async def test_sparse_search_finds_contributions_by_their_terms(index):
    await index.upsert(
        [
            contribution("kafka", vec((0, 1.0)), sparse={17: 1.0, 42: 0.5}),
            contribution("tls", vec((0, 1.0)), sparse={99: 1.0}),
            contribution("dense-only", vec((0, 1.0))),
            contribution("other-tenant", vec((0, 1.0)), tenant="globex", sparse={17: 1.0}),
        ]
    )

    hits = await index.search_sparse("acme", {17: 1.0}, limit=10)

    assert [h.post_id for h in hits] == ["kafka"]
    assert hits[0].similarity > 0


async def test_bad_vectors_are_refused_and_lose_nothing(index):
    await index.upsert([contribution("p1", vec((0, 1.0)))])

    with pytest.raises(ValueError, match="384"):
        await index.upsert([contribution("p2", vec((0, 1.0))), contribution("short", [1.0, 0.0])])
    with pytest.raises(ValueError, match="384"):
        await index.search("acme", [1.0, 0.0, 0.0], limit=5)
    with pytest.raises(ValueError, match="zeros"):
        await index.search("acme", vec(), limit=5)

    assert [h.post_id for h in await index.search("acme", vec((0, 1.0)), limit=5)] == ["p1"]


async def test_a_closed_index_is_not_ready_and_says_so(index):
    assert await index.ready() is True

    await index.close()

    assert await index.ready() is False
    with pytest.raises(IndexUnavailable, match="closed"):
        await index.count("acme")
    await index.close()  # closing twice is harmless


async def test_edge_keeps_its_points_across_close_and_reopen(tmp_path):
    path = tmp_path / "nested" / "index"
    first = await open_index(qdrant_url=None, edge_path=path, collection="ignored")
    assert isinstance(first, EdgeIndex)
    await first.upsert([contribution("p1", vec((0, 1.0)), title="Kept")])
    await first.close()

    reopened = await EdgeIndex.open(path)
    try:
        [hit] = await reopened.search("acme", vec((0, 1.0)), limit=5)
        assert (hit.post_id, hit.title, await reopened.count("acme")) == ("p1", "Kept", 1)
    finally:
        await reopened.close()


async def test_a_second_edge_index_on_an_open_shard_fails_clearly(tmp_path):
    first = await EdgeIndex.open(tmp_path / "index")
    try:
        with pytest.raises(ShardLocked, match="already open"):
            await EdgeIndex.open(tmp_path / "index")
        assert await first.ready() is True
    finally:
        await first.close()


async def test_an_unreachable_server_is_unavailable(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(IndexUnavailable, match="did not answer"):
        await open_index(qdrant_url=f"http://127.0.0.1:{port}", edge_path=tmp_path / "unused")
    assert not (tmp_path / "unused").exists()


# --- as-of filters, lexical search and per-author counts: Edge, the server and the unit-test fake ---


@pytest.fixture(params=["edge", "server", "fake"])
async def any_index(request, tmp_path):
    """A fresh index of each kind, the in-memory fake included so unit tests can trust it."""
    if request.param == "edge":
        opened = await EdgeIndex.open(tmp_path / "index")
    elif request.param == "server":
        opened = await QdrantServerIndex.open(AsyncQdrantClient(location=":memory:"), f"c-{uuid.uuid4().hex[:8]}")
    else:
        opened = InMemoryIndex()
    yield opened
    await opened.close()


SECOND = timedelta(seconds=1)

# A small tenant history: one post names the in-house ledger daemon, one the Kafka consensus mode.
CORPUS = [
    ("q-ledgerd", "alice", "Why does ledgerd drop entries after a restart?", "Our ledgerd daemon loses entries."),
    ("a-ledgerd", "bob", None, "Restart ledgerd with the journal flag so entries survive a restart."),
    ("q-kraft", "carol", "Migrating the cluster to KRaft", "We want to drop ZooKeeper from our Kafka cluster."),
    ("a-kafka", "dave", None, "Kafka consumers lag when the cluster restarts; check the broker settings."),
    ("a-restart", "erin", None, "A restart of the service usually fixes entries that look stale."),
    ("a-deploy", "frank", "Deploys", "Deploy the service with the pipeline, then restart the pods."),
]


def corpus(tenant: str = "acme", **fields) -> list[Contribution]:
    return [
        contribution(post_id, vec((0, 1.0)), tenant=tenant, author_id=author, title=title, text=text, **fields)
        for post_id, author, title, text in CORPUS
    ]


async def test_before_keeps_only_contributions_created_strictly_before(any_index):
    await any_index.upsert(
        [
            contribution("earlier", vec((0, 1.0)), created_at=WHEN - SECOND, text="ledgerd earlier"),
            contribution("at", vec((0, 1.0)), created_at=WHEN, text="ledgerd at the instant"),
            contribution("later", vec((0, 1.0)), created_at=WHEN + SECOND, text="ledgerd later"),
            contribution("globex", vec((0, 1.0)), tenant="globex", created_at=WHEN - SECOND, text="ledgerd"),
        ]
    )

    dense = await any_index.search("acme", vec((0, 1.0)), limit=10, before=WHEN)
    lexical = await any_index.search_lexical("acme", "ledgerd", limit=10, before=WHEN)
    a_second_later = await any_index.search("acme", vec((0, 1.0)), limit=10, before=WHEN + SECOND)
    unfiltered = await any_index.search_lexical("acme", "ledgerd", limit=10)

    assert [h.post_id for h in dense] == ["earlier"]
    assert [h.post_id for h in lexical] == ["earlier"]
    assert {h.post_id for h in a_second_later} == {"earlier", "at"}
    assert {h.post_id for h in unfiltered} == {"earlier", "at", "later"}
    # A naive instant is UTC, as stored times are.
    naive = WHEN.replace(tzinfo=None)
    assert [h.post_id for h in await any_index.search("acme", vec((0, 1.0)), limit=10, before=naive)] == ["earlier"]
    assert await any_index.search("globex", vec((0, 1.0)), limit=10, before=WHEN - SECOND) == []


async def test_lexical_search_finds_a_rare_product_name_or_acronym_first(any_index):
    await any_index.upsert(corpus())

    ledgerd = await any_index.search_lexical("acme", "how do I restart ledgerd without losing entries", limit=10)
    kraft = await any_index.search_lexical("acme", "kraft migration", limit=10)  # the title says "KRaft"

    # Both ledgerd posts first ("losing" matches "loses": stemmed); then a post sharing only common words.
    assert [h.post_id for h in ledgerd][:3] == ["q-ledgerd", "a-ledgerd", "a-restart"]
    assert [h.post_id for h in kraft] == ["q-kraft"]
    scores = [h.similarity for h in ledgerd]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1] > 0
    assert (kraft[0].author_id, kraft[0].title) == ("carol", "Migrating the cluster to KRaft")


async def test_lexical_search_filters_like_the_dense_search(any_index):
    await any_index.upsert(corpus())
    await any_index.upsert(corpus(tenant="globex"))
    await any_index.upsert(
        [contribution("hr-ledgerd", vec((0, 1.0)), author_id="hana", text="ledgerd", audience=("hr",))]
    )

    public = await any_index.search_lexical("acme", "ledgerd restart", limit=10, audiences=["public"])
    excluded = await any_index.search_lexical(
        "acme", "ledgerd restart", limit=10, exclude_authors=["bob"], exclude_threads=["t-q-ledgerd"]
    )
    top = await any_index.search_lexical("acme", "ledgerd restart", limit=1)

    assert "hr-ledgerd" not in {h.post_id for h in public}
    assert {"q-ledgerd", "a-ledgerd"} <= {h.post_id for h in public}
    assert not {"a-ledgerd", "q-ledgerd"} & {h.post_id for h in excluded}
    assert len(top) == 1
    assert await any_index.search_lexical("initech", "ledgerd", limit=10) == []
    assert await any_index.search_lexical("acme", "the of and", limit=10) == []  # only stopwords
    assert await any_index.search_lexical("acme", "zookeeperless", limit=10) == []


async def test_lexical_order_and_scores_agree_across_adapters(tmp_path):
    edge = await EdgeIndex.open(tmp_path / "index")
    server = await QdrantServerIndex.open(AsyncQdrantClient(location=":memory:"), "agree")
    fake = InMemoryIndex()
    queries = ["restart ledgerd entries", "kafka cluster restart", "KRaft ZooKeeper", "deploy the service"]
    try:
        answers = []
        for index in (edge, server, fake):
            # The other tenant's words must not change acme's scores (IDF is per tenant).
            await index.upsert(corpus() + corpus(tenant="globex") + corpus(tenant="globex", thread_id="t2"))
            answers.append([await index.search_lexical("acme", q, limit=10) for q in queries])
    finally:
        await edge.close()
        await server.close()

    for found in answers[1:]:
        for expected, got in zip(answers[0], found, strict=True):
            assert [h.post_id for h in got] == [h.post_id for h in expected]
            assert [h.similarity for h in got] == pytest.approx([h.similarity for h in expected], rel=1e-4)


async def test_an_explicit_sparse_vector_is_indexed_as_given(any_index):
    await any_index.upsert([contribution("given", vec((0, 1.0)), text="nothing about it", sparse={})])
    await any_index.upsert([contribution("computed", vec((0, 1.0)), text="ledgerd")])

    assert [h.post_id for h in await any_index.search_lexical("acme", "ledgerd nothing", limit=10)] == ["computed"]


def history() -> list[Contribution]:
    day = timedelta(days=1)
    return [
        contribution(
            "a1", vec((0, 1.0)), author_id="ann", tags=("kafka", "ops"), accepted=True, created_at=WHEN - 40 * day
        ),
        contribution("a2", vec((0, 1.0)), author_id="ann", tags=("kafka",), created_at=WHEN - 10 * day),
        contribution("a3", vec((0, 1.0)), author_id="ann", tags=("tls",), accepted=True, created_at=WHEN),
        contribution("b1", vec((0, 1.0)), author_id="ben", tags=("ops",), created_at=WHEN - 5 * day),
        contribution(
            "b2", vec((0, 1.0)), author_id="ben", kind=PostKind.QUESTION, tags=("kafka",), created_at=WHEN - day
        ),
        contribution("c1", vec((0, 1.0)), author_id="cat", kind=PostKind.COMMENT, created_at=WHEN - day),
        contribution("g1", vec((0, 1.0)), tenant="globex", author_id="ann", tags=("kafka",), created_at=WHEN - day),
    ]


async def test_author_counts_count_each_authors_matching_contributions(any_index):
    await any_index.upsert(history())
    answers = [PostKind.ANSWER]

    assert await any_index.author_counts("acme") == {"ann": 3, "ben": 2, "cat": 1}
    assert await any_index.author_counts("acme", kinds=answers) == {"ann": 3, "ben": 1}
    assert await any_index.author_counts("acme", kinds=[PostKind.QUESTION, PostKind.COMMENT]) == {"ben": 1, "cat": 1}
    assert await any_index.author_counts("acme", tags_any=["kafka", "tls"], kinds=answers) == {"ann": 3}
    assert await any_index.author_counts("acme", tags_any=["ops"]) == {"ann": 1, "ben": 1}
    assert await any_index.author_counts("acme", accepted=True) == {"ann": 2}
    assert await any_index.author_counts("acme", accepted=False) == {"ann": 1, "ben": 2, "cat": 1}
    assert await any_index.author_counts("acme", authors=["ben", "zoe"]) == {"ben": 2}
    assert await any_index.author_counts("globex") == {"ann": 1}
    assert await any_index.author_counts("initech") == {}


async def test_author_counts_window_is_after_inclusive_before_exclusive(any_index):
    await any_index.upsert(history())
    day = timedelta(days=1)

    last_30_days = await any_index.author_counts("acme", kinds=[PostKind.ANSWER], after=WHEN - 30 * day, before=WHEN)
    from_the_first = await any_index.author_counts("acme", after=WHEN - 40 * day, before=WHEN - 40 * day + SECOND)
    up_to_now = await any_index.author_counts("acme", before=WHEN)
    from_now = await any_index.author_counts("acme", after=WHEN)

    assert last_30_days == {"ann": 1, "ben": 1}
    assert from_the_first == {"ann": 1}
    assert up_to_now == {"ann": 2, "ben": 2, "cat": 1}
    assert from_now == {"ann": 1}
    assert await any_index.author_counts("globex", before=WHEN - day) == {}


async def test_recent_authors_are_the_latest_posters_newest_first_as_of_an_instant(any_index):
    await any_index.upsert(history())
    answers = [PostKind.ANSWER]

    # ann's answer at WHEN is the newest; then ben (5 days before), ann (10), ann (40).
    assert await any_index.recent_authors("acme", kinds=answers, limit=10) == ["ann", "ben", "ann", "ann"]
    assert await any_index.recent_authors("acme", kinds=answers, before=WHEN, limit=10) == ["ben", "ann", "ann"]
    assert await any_index.recent_authors("acme", kinds=answers, before=WHEN, limit=2) == ["ben", "ann"]
    assert await any_index.recent_authors("acme", kinds=answers, after=WHEN - timedelta(days=10), limit=10) == [
        "ann", "ben", "ann",
    ]
    # Every kind: ben's question and cat's comment (the same second, in either order) come first.
    everything = await any_index.recent_authors("acme", before=WHEN, limit=10)
    assert sorted(everything[:2]) == ["ben", "cat"] and everything[2:] == ["ben", "ann", "ann"]
    assert await any_index.recent_authors("globex", kinds=answers, limit=10) == ["ann"]
    assert await any_index.recent_authors("initech", limit=10) == []
    with pytest.raises(ValueError):
        await any_index.recent_authors("acme", limit=0)


async def test_accepted_questions_come_with_their_vectors_and_answerers_oldest_first(any_index):
    hour = timedelta(hours=1)
    question = partial(contribution, author_id="asker", kind=PostKind.QUESTION)
    accepted = partial(contribution, accepted=True)
    await any_index.upsert(
        [
            question("q1", vec((0, 1.0)), thread_id="t1", title="Lag", tags=("kafka",)),
            accepted("a1", vec((0, 1.0)), thread_id="t1", author_id="ann", created_at=WHEN + hour),
            question("q2", vec((1, 1.0)), thread_id="t2", created_at=WHEN + hour),
            contribution("a2", vec((1, 1.0)), thread_id="t2", author_id="ben", created_at=WHEN + 2 * hour),
            question("q3", vec((2, 1.0)), thread_id="t3", created_at=WHEN + 2 * hour, audience=("platform",)),
            accepted("a3", vec((2, 1.0)), thread_id="t3", author_id="cat", created_at=WHEN + 3 * hour),
            accepted("a4", vec((3, 1.0)), thread_id="t-gone", author_id="dan", created_at=WHEN + 4 * hour),
            contribution("g1", vec((0, 1.0)), tenant="globex", thread_id="t9", kind=PostKind.QUESTION),
            accepted("g2", vec((0, 1.0)), tenant="globex", thread_id="t9", author_id="eve"),
        ]
    )

    found = await any_index.accepted_questions("acme", limit=10)

    # t-gone's question is not indexed: its accepted answer has nothing to train on.
    assert [(a.question.post_id, a.answerer) for a in found] == [("q1", "ann"), ("q3", "cat")]
    assert found[0].vector == pytest.approx(vec((0, 1.0))) and found[1].vector == pytest.approx(vec((2, 1.0)))
    first = found[0].question
    assert (first.title, first.tags, first.author_id) == ("Lag", ("kafka",), "asker")
    assert (found[0].audience, found[1].audience) == (("public",), ("platform",))
    # Only the latest accepted answers are read: a4 and a3.
    assert [a.question.post_id for a in await any_index.accepted_questions("acme", limit=2)] == ["q3"]
    assert [a.answerer for a in await any_index.accepted_questions("globex", limit=10)] == ["eve"]
    assert await any_index.accepted_questions("initech", limit=10) == []
    with pytest.raises(ValueError):
        await any_index.accepted_questions("acme", limit=0)


async def test_opening_an_older_edge_shard_adds_the_missing_payload_indexes(tmp_path):
    path = tmp_path / "index"
    first = await EdgeIndex.open(path)
    await first.close()
    # An older shard had no tags, accepted or created_ts index: a fresh raw shard with only the tenant.
    shutil.rmtree(path)
    path.mkdir()
    shard = EdgeShard.create(str(path), shard_config(DIM))
    shard.update(UpdateOperation.create_field_index("tenant", KeywordIndexParams(is_tenant=True)))
    shard.close()

    reopened = await EdgeIndex.open(path)
    try:
        await reopened.upsert(history())
        schema = await reopened.engine.run(lambda s: set(s.info().payload_schema))
        assert {"tags", "accepted", "accepted_flag", "created_ts", "author_id"} <= schema
        assert await reopened.author_counts("acme", tags_any=["kafka"], accepted=True) == {"ann": 1}
    finally:
        await reopened.close()


async def test_an_edge_shard_from_before_int8_copies_opens_and_compacts_with_the_same_answers(tmp_path):
    path = tmp_path / "index"
    # As earlier versions created it: plain vectors in RAM, no quantization, no memory placement.
    older = EdgeConfig(
        vectors={"dense": EdgeVectorParams(size=DIM, distance=Distance.Cosine)},
        sparse_vectors={"sparse": EdgeSparseVectorParams(modifier=Modifier.Idf)},
    )
    EdgeShard.create(str(path), older).close()
    rng = random.Random(7)
    # Enough points (about 10 MB of vectors) for the optimizer to rewrite the segment at all, in two
    # tenants each below the graph's full_scan_threshold: their searches stay exact, so the answers
    # can be compared one for one (random vectors are HNSW's worst case).
    written = [
        contribution(
            f"p{i}", [rng.gauss(0.0, 1.0) for _ in range(DIM)], author_id=f"u{i % 40}",
            tenant="acme" if i % 2 else "globex",
        )
        for i in range(7_000)
    ]
    query = list(written[5].vector)
    index = await EdgeIndex.open(path)
    await index.upsert(written)
    before = [(h.post_id, round(h.similarity, 4)) for h in await index.search("acme", query, limit=5)]
    await index.close()

    assert compact(path, DIM) is True
    reopened = await EdgeIndex.open(path)
    try:
        after = [(h.post_id, round(h.similarity, 4)) for h in await reopened.search("acme", query, limit=5)]
        # Rescored with the original vectors: the same posts, in the same order, with exact similarities.
        assert after == before
        assert after[0] == ("p5", 1.0)
        assert await reopened.count("acme") == 3_500
        assert await reopened.engine.run(lambda s: s.info().indexed_vectors_count) >= 7_000
    finally:
        await reopened.close()


async def test_compacting_builds_a_graph_per_large_tenant_keeps_payloads_in_memory_and_the_answers(tmp_path):
    path = tmp_path / "index"
    rng = random.Random(11)
    # acme above full_scan_threshold (about 6,600 points of 384 dims), so it gets a graph; globex
    # below it, searched exactly through the tenant's payload index.
    written = [
        contribution(f"p{i}", [rng.gauss(0.0, 1.0) for _ in range(DIM)], author_id=f"u{i % 40}") for i in range(7_000)
    ]
    written += [
        contribution(f"g{i}", [rng.gauss(0.0, 1.0) for _ in range(DIM)], tenant="globex") for i in range(300)
    ]
    index = await EdgeIndex.open(path)
    await index.upsert(written)
    await index.close()

    assert compact(path, DIM) is True
    # Edge reports no index details; the segment's own record of the graph it built says it.
    (graph,) = [
        json.loads(f.read_text()) for f in path.glob("segments/*/vector_index-dense/hnsw_config.json")
        if json.loads(f.read_text())["indexed_vector_count"] > 0
    ]
    assert (graph["m"], graph["payload_m"]) == (0, 16)
    # The payloads the searches read are kept in memory (Memory.Cached), not read from disk each time.
    segments = [json.loads(f.read_text())["config"] for f in path.glob("segments/*/segment.json")]
    storage = [segment["payload_storage_type"] for segment in segments]
    assert {"type": "in_ram_mmap"} in storage
    reopened = await EdgeIndex.open(path)
    try:
        for position in (5, 1234, 6999):
            query = list(written[position].vector)
            hits = await reopened.search("acme", query, limit=5)
            assert (hits[0].post_id, round(hits[0].similarity, 4)) == (f"p{position}", 1.0)
            assert all(h.post_id.startswith("p") for h in hits)
        small = await reopened.search("globex", list(written[7_000 + 17].vector), limit=300)
        assert len(small) == 300 and small[0].post_id == "g17"
    finally:
        await reopened.close()


async def test_compacting_a_shard_a_matcher_holds_fails_clearly(tmp_path):
    held = await EdgeIndex.open(tmp_path / "index")
    try:
        with pytest.raises(ShardLocked, match="already open"):
            compact(tmp_path / "index", DIM)
        assert await held.ready() is True
    finally:
        await held.close()


def response(question: str, person: str, kind: str, vector: list[float], *, tenant: str = "acme", at=WHEN) -> Feedback:
    return Feedback(
        tenant=tenant,
        question_post_id=question,
        thread_id=f"t-{question}",
        person_id=person,
        response=ResponseKind(kind),
        at=at,
        vector=vector,
    )


async def test_a_posts_vector_comes_back_as_indexed(any_index):
    await any_index.upsert([contribution("q1", vec((0, 1.0), (3, 0.5)), kind=PostKind.QUESTION)])

    stored = await any_index.vector("acme", "q1")

    assert stored is not None and len(stored) == DIM
    # Cosine adapters may keep the vector normalised: compare directions.
    assert stored[3] / stored[0] == pytest.approx(0.5, abs=1e-5)
    assert await any_index.vector("acme", "missing") is None
    assert await any_index.vector("globex", "q1") is None


async def test_responses_are_found_near_similar_questions_and_never_among_posts(any_index):
    await any_index.upsert(corpus())
    await any_index.record_feedback(response("q-near", "bob", "not_my_area", vec((0, 1.0), (1, 0.2))))
    await any_index.record_feedback(response("q-far", "carol", "answered", vec((1, 1.0))))
    await any_index.record_feedback(response("q-near", "dave", "answered", vec((0, 1.0)), tenant="globex"))

    near = await any_index.feedback_near("acme", vec((0, 1.0)), limit=10)

    assert [(h.person_id, h.response, h.question_post_id, h.thread_id) for h in near] == [
        ("bob", "not_my_area", "q-near", "t-q-near"),
        ("carol", "answered", "q-far", "t-q-far"),
    ]
    assert near[0].similarity == pytest.approx(1 / (1 + 0.2**2) ** 0.5, abs=1e-5)
    assert near[1].similarity == pytest.approx(0.0, abs=1e-5)
    assert near[0].at == WHEN
    # Responses live apart from posts: searches, counts and threads never see them.
    assert {h.post_id for h in await any_index.search("acme", vec((0, 1.0)), limit=50)} == {c.post_id for c in corpus()}
    assert await any_index.count("acme") == len(CORPUS)
    assert "bob" not in (await any_index.thread("acme", "t-q-near")).participants


async def test_a_later_response_replaces_the_earlier_one_and_before_bounds_them(any_index):
    await any_index.record_feedback(response("q1", "bob", "accepted", vec((0, 1.0))))
    await any_index.record_feedback(response("q1", "bob", "declined", vec((0, 1.0)), at=WHEN + timedelta(hours=2)))

    [latest] = await any_index.feedback_near("acme", vec((0, 1.0)), limit=10)

    assert (latest.response, latest.at) == ("declined", WHEN + timedelta(hours=2))
    assert await any_index.feedback_near("acme", vec((0, 1.0)), limit=10, before=WHEN + timedelta(hours=2)) == []
    assert len(await any_index.feedback_near("acme", vec((0, 1.0)), limit=10, before=WHEN + timedelta(hours=3))) == 1


async def test_an_answer_given_stays_whatever_the_person_says_afterwards(any_index):
    await any_index.record_feedback(response("q1", "bob", "answered", vec((0, 1.0))))
    await any_index.record_feedback(response("q1", "bob", "declined", vec((0, 1.0)), at=WHEN + timedelta(hours=1)))
    await any_index.record_feedback(response("q1", "bob", "not_my_area", vec((0, 1.0)), at=WHEN + timedelta(hours=2)))

    found = await any_index.feedback_near("acme", vec((0, 1.0)), limit=10)

    assert sorted(h.response for h in found) == ["answered", "not_my_area"]


async def test_deleting_a_question_or_erasing_a_person_removes_their_responses(any_index):
    await any_index.upsert([contribution("q1", vec((0, 1.0)), kind=PostKind.QUESTION, author_id="asker")])
    await any_index.upsert([contribution("q2", vec((0, 1.0)), kind=PostKind.QUESTION, author_id="asker")])
    await any_index.record_feedback(response("q1", "bob", "answered", vec((0, 1.0))))
    await any_index.record_feedback(response("q2", "bob", "declined", vec((0, 1.0))))
    await any_index.record_feedback(response("q2", "carol", "not_my_area", vec((0, 1.0))))
    await any_index.record_feedback(response("q2", "carol", "answered", vec((0, 1.0)), tenant="globex"))

    await any_index.delete_post("acme", "q1")
    assert {
        (h.question_post_id, h.person_id) for h in await any_index.feedback_near("acme", vec((0, 1.0)), limit=10)
    } == {
        ("q2", "bob"),
        ("q2", "carol"),
    }

    assert await any_index.erase_person("acme", "carol") == 1
    assert [h.person_id for h in await any_index.feedback_near("acme", vec((0, 1.0)), limit=10)] == ["bob"]
    # The other tenant's responses stay.
    assert [h.person_id for h in await any_index.feedback_near("globex", vec((0, 1.0)), limit=10)] == ["carol"]


async def test_thread_answers_are_the_answers_of_those_threads_as_a_search_would_see_them(any_index):
    def answer(post_id: str, thread: str, author: str, **fields) -> Contribution:
        return contribution(post_id, vec((0, 1.0)), thread_id=thread, author_id=author, **fields)

    await any_index.upsert(
        [
            contribution("q1", vec((0, 1.0)), thread_id="t1", author_id="asker", kind=PostKind.QUESTION, title="Q"),
            answer("a1", "t1", "ann", accepted=True, score=3, title="Q", text="use the flag"),
            answer("a2", "t1", "ben"),
            contribution("c1", vec((0, 1.0)), thread_id="t1", author_id="cat", kind=PostKind.COMMENT),
            answer("a3", "t2", "cat", created_at=WHEN + SECOND),  # after the question
            answer("a4", "t2", "dan", audience=("hr",)),
            answer("a5", "t2", "eve"),
            answer("a6", "t3", "fay"),  # a thread not asked for
            answer("a1", "t1", "gus", tenant="globex"),
        ]
    )

    found = await any_index.thread_answers("acme", ["t1", "t2"])
    seen = await any_index.thread_answers(
        "acme", ["t2", "t1"], audiences=["public"], exclude_authors=["ben"], before=WHEN + SECOND
    )

    assert [(h.thread_id, h.post_id, h.author_id) for h in found] == [
        ("t1", "a1", "ann"), ("t1", "a2", "ben"), ("t2", "a3", "cat"), ("t2", "a4", "dan"), ("t2", "a5", "eve")
    ]
    assert [h.post_id for h in seen] == ["a1", "a5"]
    first = found[0]
    assert (first.kind, first.accepted, first.score, first.title, first.text) == (
        PostKind.ANSWER, True, 3, "Q", "use the flag"
    )
    assert first.created_at == WHEN and all(h.similarity == 0.0 for h in found)
    assert await any_index.thread_answers("acme", []) == []
    assert await any_index.thread_answers("initech", ["t1"]) == []


async def test_every_search_gives_the_whole_hit(any_index):
    """The searches ask the engine for a hit's fields only: each one still comes back whole."""
    await any_index.upsert(
        [
            contribution("q1", vec((1, 1.0)), thread_id="t1", author_id="asker", kind=PostKind.QUESTION, title="TLS"),
            contribution(
                "a1", vec((0, 1.0)), thread_id="t1", author_id="ann", title="TLS", text="rotate the certificate",
                tags=("tls", "ops"), audience=("public", "hr"), accepted=True, score=7, url="https://intranet/a1",
            ),
        ]
    )
    whole = Hit(
        post_id="a1", thread_id="t1", author_id="ann", kind=PostKind.ANSWER, title="TLS",
        text="rotate the certificate", created_at=WHEN, similarity=0.0, tags=("tls", "ops"), accepted=True,
        score=7, url="https://intranet/a1",
    )

    dense = await any_index.search("acme", vec((0, 1.0)), limit=1)
    lexical = await any_index.search_lexical("acme", "rotate certificate", limit=1)
    answers = await any_index.thread_answers("acme", ["t1"])
    nearest = await any_index.nearest_by_author("acme", vec((0, 1.0)), ["ann"], limit=1)

    for found in (dense, lexical, answers, nearest["ann"]):
        assert [replace(hit, similarity=0.0) for hit in found] == [whole]


async def test_a_post_found_then_written_again_deleted_or_erased_is_seen_as_it_is_now(any_index):
    """Edge keeps the hits it read (hit_cache.py): a write must never leave a search a stale one."""
    async def found() -> list[dict[str, tuple]]:
        searches = await asyncio.gather(
            any_index.search("acme", vec((0, 1.0)), limit=5),
            any_index.search_lexical("acme", "words", limit=5),
            any_index.thread_answers("acme", ["t1"]),
            any_index.nearest_by_author("acme", vec((0, 1.0)), ["alice", "bob"], limit=5),
        )
        dense, lexical, answers, nearest = searches
        by_author = [hit for hits in nearest.values() for hit in hits]
        return [{h.post_id: (h.title, h.text) for h in hits} for hits in (dense, lexical, answers, by_author)]

    def post(post_id: str, author: str, title: str) -> Contribution:
        text = f"{title} words"
        return contribution(post_id, vec((0, 1.0)), thread_id="t1", author_id=author, title=title, text=text)

    await any_index.upsert([post("p1", "alice", "old"), post("p2", "bob", "bob's")])
    assert await found() == [{"p1": ("old", "old words"), "p2": ("bob's", "bob's words")}] * 4

    # Written again while searches read it, before and after them.
    await asyncio.gather(found(), any_index.upsert([post("p1", "alice", "new")]), found())
    assert await found() == [{"p1": ("new", "new words"), "p2": ("bob's", "bob's words")}] * 4

    await asyncio.gather(found(), any_index.delete_post("acme", "p2"), found())
    assert await found() == [{"p1": ("new", "new words")}] * 4

    await asyncio.gather(found(), any_index.erase_person("acme", "alice"), found())
    assert await found() == [{}] * 4


async def test_nearest_by_author_gives_each_persons_own_closest_visible_posts(any_index):
    await any_index.upsert(
        [
            contribution("a-near", vec((0, 1.0), (1, 0.1)), author_id="ann"),
            contribution("a-far", vec((1, 1.0)), author_id="ann"),
            contribution("a-hidden", vec((0, 1.0)), author_id="ann", audience=("hr",)),
            contribution("a-later", vec((0, 1.0)), author_id="ann", created_at=WHEN + timedelta(days=1)),
            contribution("a-this-thread", vec((0, 1.0)), author_id="ann", thread_id="asked"),
            contribution("b-only", vec((0, 0.2), (1, 1.0)), author_id="bob"),
            contribution("c-closest", vec((0, 1.0)), author_id="cy"),
            contribution("other-tenant", vec((0, 1.0)), author_id="dee", tenant="globex"),
        ]
    )

    found = await any_index.nearest_by_author(
        "acme", vec((0, 1.0)), ["ann", "bob", "dee", "nobody"], limit=2,
        audiences=["public"], exclude_threads=["asked"], before=WHEN + timedelta(hours=1),
    )

    assert {author: [h.post_id for h in hits] for author, hits in found.items()} == {
        "ann": ["a-near", "a-far"],
        "bob": ["b-only"],
    }
    assert found["ann"][0].similarity == pytest.approx(1 / (1 + 0.1**2) ** 0.5, abs=1e-5)
    await any_index.upsert([contribution("c-asked", vec((0, 1.0)), author_id="cy", kind=PostKind.QUESTION)])
    answers = await any_index.nearest_by_author("acme", vec((0, 1.0)), ["cy"], limit=5, kinds=[PostKind.ANSWER])
    assert [h.post_id for h in answers["cy"]] == ["c-closest"]
    assert await any_index.nearest_by_author("acme", vec((0, 1.0)), [], limit=1) == {}
    with pytest.raises(ValueError):
        await any_index.nearest_by_author("acme", vec((0, 1.0)), ["ann"], limit=0)
