"""`expertmatch import` into the real ingest app: the dump's posts land on the backfill lane, posts.backfill."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.evaluation.importer import ImportFailed, import_dump, wait_indexed
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from services.matcher.app import create_app as create_matcher
from services.matcher.settings import MatcherSettings
from shared.events import PostKind, PostUpserted, decode_event
from shared.topics import BACKFILL
from tests.fakes import FakeEmbedder, InMemoryIndex
from tests.support.topics import read_records
from tests.unit.test_eval_import import DUMP

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(common_settings) -> IngestSettings:
    return IngestSettings(**common_settings.model_dump())


@pytest.fixture
async def ingest(settings):
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        yield httpx.ASGITransport(app=manager.app)


def client(transport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://ingest")


async def posts_on_topic(settings: IngestSettings, count: int) -> list[PostUpserted]:
    """The `count` events of the backfill lane."""
    return [decode_event(r.value) for r in await read_records(settings, settings.topic(BACKFILL), count, timeout=10.0)]


async def test_a_dump_lands_on_the_backfill_lane_and_a_rerun_sends_the_same_ids(settings, ingest, tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)

    first = await import_dump(dump, key="acme-key", client=client(ingest), batch=2, show_progress=False)
    again = await import_dump(dump, key="acme-key", client=client(ingest), batch=2, show_progress=False)

    events = await posts_on_topic(settings, 6)
    assert first.sent == again.sent == 3
    posts = [e.data for e in events]
    assert [p.id for p in posts] == ["1", "2", "3", "1", "2", "3"]
    assert all(e.tenant == "acme" and p.backfill for e, p in zip(events, posts, strict=True))
    question, accepted, empty = posts[:3]
    assert question.kind is PostKind.QUESTION and question.title == "Dry hopping time"
    assert question.body == "How long?" and question.tags == ("hops", "ipa") and question.score == 4
    assert question.created_at.isoformat() == "2016-03-01T10:00:00+00:00"
    assert accepted.kind is PostKind.ANSWER and accepted.thread_id == "1" and accepted.author_id == "12"
    assert accepted.accepted is True and accepted.score == 7
    assert empty.body == "Dry hopping time" and empty.accepted is False


async def test_a_wrong_key_stops_the_import_with_a_clear_error(ingest, tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)
    with pytest.raises(ImportFailed, match="refused the API key"):
        await import_dump(dump, key="wrong-key", client=client(ingest), show_progress=False)


class Clock:
    """Seconds that pass only when the waiting sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0.05)  # the matcher's consumer gets its turn


async def test_waiting_follows_the_matcher_until_it_holds_every_post_sent(common_settings, ingest, tmp_path):
    dump = tmp_path / "Posts.xml"
    dump.write_text(DUMP)
    index = InMemoryIndex()
    matcher = create_matcher(MatcherSettings(**common_settings.model_dump()), embedder=FakeEmbedder(), index=index)
    async with LifespanManager(matcher, startup_timeout=60, shutdown_timeout=30):
        summary = await import_dump(dump, key="acme-key", client=client(ingest), batch=2, show_progress=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=matcher), base_url="http://matcher",
            headers={"Authorization": "Bearer acme-key"},
        ) as http:
            clock = Clock()
            indexed = await wait_indexed(
                http, summary.post_ids, stall=600, sleep=clock.sleep, clock=clock, show_progress=False
            )
            assert (summary.post_ids, indexed) == (["1", "2", "3"], 3)
            assert await index.count("acme") == 3

            # Posts the matcher never gets (set aside, or never sent): waiting gives up, saying where to look.
            clock = Clock()
            with pytest.raises(ImportFailed, match=r"indexed 3 of the 5 posts sent, and no more for 60 s.*dlq list"):
                await wait_indexed(
                    http, ["1", "2", "3", "lost-1", "lost-2"], stall=60, sleep=clock.sleep, clock=clock,
                    show_progress=False,
                )
            assert clock.now > 60

            # An index away is waited out, not taken for an answer: the stall clock runs on.
            index.available = False
            clock = Clock()
            with pytest.raises(ImportFailed, match=r"indexed 0 of the 1 posts sent"):
                await wait_indexed(http, ["1"], stall=10, sleep=clock.sleep, clock=clock, show_progress=False)

            with pytest.raises(ImportFailed, match="refused the API key"):
                http.headers["Authorization"] = "Bearer wrong-key"
                await wait_indexed(http, ["1"], stall=60, sleep=clock.sleep, clock=clock, show_progress=False)
