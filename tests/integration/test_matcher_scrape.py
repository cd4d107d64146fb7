"""What the matcher's `/metrics` reads from the index at scrape time, and what it says when the index is away."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from services.matcher.app import create_app
from services.matcher.index.base import Contribution
from services.matcher.settings import MatcherSettings
from shared.events import PostKind
from tests.fakes import FakeEmbedder, InMemoryIndex

pytestmark = pytest.mark.integration

ACME = {"Authorization": "Bearer acme-key"}


def contribution(tenant: str, post_id: str) -> Contribution:
    return Contribution(
        tenant=tenant, post_id=post_id, thread_id=post_id, author_id="kim", kind=PostKind.ANSWER, title=None,
        text="Raise the pod's memory limit.", created_at=datetime(2026, 1, 5, tzinfo=UTC), vector=[1.0] + [0.0] * 383,
    )


def index_sizes(text: str) -> dict[str, float]:
    return {
        sample.labels["tenant"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "expertmatch_index_contributions"
    }


async def test_the_scrape_reads_each_configured_tenants_index_size_and_leaves_it_out_while_the_index_is_away(
    common_settings,
):
    settings = MatcherSettings(**common_settings.model_dump(), consume=False)
    index = InMemoryIndex()
    await index.upsert([contribution("acme", "p1"), contribution("acme", "p2"), contribution("initech", "p3")])
    app = create_app(settings, embedder=FakeEmbedder(), index=index)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://matcher") as client:
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200
            # Only the tenants the keys configure name a series: an unknown tenant's posts are counted by none.
            assert index_sizes(scrape.text) == {"acme": 2, "globex": 0}
            assert "expertmatch_invitations_total" not in scrape.text  # the notifier's, not shown here

            index.available = False
            scrape = await client.get("/metrics")
            assert scrape.status_code == 200 and index_sizes(scrape.text) == {}  # absent, not stale
            assert "expertmatch_http_requests_total" in scrape.text
            stats = await client.get("/v1/index/stats", headers=ACME)
            assert stats.status_code == 503 and stats.headers["retry-after"] == "5"
            assert stats.json()["detail"].startswith("index unavailable")

            index.available = True
            assert index_sizes((await client.get("/metrics")).text) == {"acme": 2, "globex": 0}
