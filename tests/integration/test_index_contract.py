"""One contract for both vector-index adapters: what the matcher relies on, against Edge and the server."""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from qdrant_client import AsyncQdrantClient

from services.matcher.index import (
    Contribution,
    EdgeIndex,
    IndexUnavailable,
    QdrantServerIndex,
    ShardLocked,
    open_index,
)
from shared.events import PostKind

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
