"""The real all-MiniLM-L6-v2 model: offline loading, semantic ranking, and search through the app."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.matcher.app import create_app
from services.matcher.embedder import SentenceEmbedder
from services.matcher.service import MatcherService
from services.matcher.settings import MatcherSettings
from shared.events import Post, PostKind, PostUpserted
from shared.kafka import make_producer, publish
from shared.topics import POSTS
from tests.fakes import InMemoryIndex

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


@pytest.fixture(scope="session")
def real_embedder():
    """The model loads once per session (about 6 s)."""
    embedder = SentenceEmbedder(batch_size=16)
    embedder.load(timeout=120)
    yield embedder
    embedder.close()


def post(post_id, author, kind, body, *, thread, title=None, tenant="acme") -> PostUpserted:
    return PostUpserted(
        tenant=tenant,
        data=Post(
            id=post_id, tenant=tenant, thread_id=thread, author_id=author, kind=kind, title=title,
            body=body, created_at=NOW - timedelta(days=60), backfill=True,
        ),
    )


# Believable history: kim answers container questions, pat answers payroll ones; words barely overlap
# with the questions asked below, so only meaning can connect them.
CORPUS = [
    post(
        "q1",
        "carol",
        PostKind.QUESTION,
        "Our pods go into CrashLoopBackOff after the deploy.",
        thread="t1",
        title="Pods crash after deploying to the cluster",
    ),
    post(
        "a1",
        "kim",
        PostKind.ANSWER,
        "Check the liveness probe and kubectl logs --previous; the container runs out of "
        "memory, raise its limits in the deployment manifest.",
        thread="t1",
    ),
    post(
        "q2",
        "dave",
        PostKind.QUESTION,
        "How do I expose a service outside the cluster?",
        thread="t2",
        title="Kubernetes ingress for an internal service",
    ),
    post(
        "a2",
        "kim",
        PostKind.ANSWER,
        "Create an Ingress resource pointing at the Service; the nginx ingress controller handles TLS.",
        thread="t2",
    ),
    post(
        "q3",
        "erin",
        PostKind.QUESTION,
        "When is the salary paid if the 25th is a Sunday?",
        thread="t3",
        title="Salary payment date",
    ),
    post(
        "a3",
        "pat",
        PostKind.ANSWER,
        "Salaries go out on the last working day before the 25th; the payroll team sends payslips by email.",
        thread="t3",
    ),
    post(
        "q4",
        "lee",
        PostKind.QUESTION,
        "Where do I find my payslip and tax certificate?",
        thread="t4",
        title="Payslip and tax forms",
    ),
    post(
        "a4",
        "pat",
        PostKind.ANSWER,
        "Payslips and the yearly tax statement are in the HR portal under Payroll.",
        thread="t4",
    ),
]


def test_the_bundled_model_loads_offline_and_embeds_unit_vectors(real_embedder):
    assert real_embedder.loaded
    [a, b, c] = asyncio.run(real_embedder.embed([
        "my container keeps getting restarted", "the pod is in a crash loop", "when do we get paid",
    ]))
    assert len(a) == real_embedder.dimension == 384
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-4)
    cosine = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert cosine(a, b) > cosine(a, c)


async def test_a_container_question_finds_the_container_expert_not_the_payroll_one(real_embedder):
    index, published = InMemoryIndex(), []

    async def collect(events):
        published.extend(events)

    service = MatcherService(index=index, embedder=real_embedder, publish=collect)
    await service.handle(CORPUS)

    container = await service.search(tenant="acme", text="My deployment's containers keep restarting on k8s", limit=5)
    assert container[0].person_id == "kim"
    assert container[0].evidence[0].post_id in {"a1", "a2"}
    payroll = await service.search(tenant="acme", text="Which day does my monthly pay arrive?", limit=5)
    assert payroll[0].person_id == "pat"


@pytest.fixture
def settings(common_settings) -> MatcherSettings:
    return MatcherSettings(**common_settings.model_dump())


async def test_search_through_the_app_is_per_tenant_and_needs_a_key(settings, real_embedder):
    app = create_app(settings, embedder=real_embedder)  # the real Qdrant Edge index under data_dir
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://matcher") as client:
            acme = {"Authorization": "Bearer acme-key"}
            globex = {"Authorization": "Bearer globex-key"}
            producer = make_producer(settings)
            await producer.start()
            try:
                await publish(producer, settings.topic(POSTS), CORPUS)
            finally:
                await producer.stop()
            await wait_for_contributions(client, acme, len(CORPUS))

            found = await client.post(
                "/v1/experts/search", json={"text": "pods restarting in kubernetes"}, headers=acme
            )
            assert found.status_code == 200, found.text
            experts = found.json()["experts"]
            assert experts[0]["person_id"] == "kim"
            assert experts[0]["evidence"][0]["snippet"]
            assert math.isclose(sum(experts[0]["parts"].values()), experts[0]["score"], rel_tol=1e-6)

            excluded = await client.post(
                "/v1/experts/search", json={"text": "pods restarting in kubernetes", "exclude": ["kim"], "limit": 1},
                headers=acme,
            )
            assert [e["person_id"] for e in excluded.json()["experts"]] != ["kim"]

            other = await client.post(
                "/v1/experts/search", json={"text": "pods restarting in kubernetes"}, headers=globex
            )
            assert other.status_code == 200 and other.json() == {"experts": []}
            assert (await client.get("/v1/index/stats", headers=globex)).json() == {
                "contributions": 0,
                "learned_from": 0,
            }

            assert (await client.post("/v1/experts/search", json={"text": "pods"})).status_code == 401
            assert (await client.get("/v1/index/stats", headers={"Authorization": "Bearer nope"})).status_code == 401

            bad = await client.post("/v1/experts/search", json={"text": "", "limit": 99}, headers=acme)
            assert bad.status_code == 422
            assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {("body", "text"), ("body", "limit")}
            forged = await client.post("/v1/experts/search", json={"text": "pods", "tenant": "globex"}, headers=acme)
            assert forged.status_code == 422 and "tenant" in forged.text
            # JSON may escape a lone surrogate, which no model or encoder takes.
            unreadable = await client.post(
                "/v1/experts/search", content=json.dumps({"text": "pods\ud800", "exclude": ["k\x00m"]}).encode(),
                headers={**acme, "content-type": "application/json"},
            )
            assert unreadable.status_code == 422
            assert [e["loc"] for e in unreadable.json()["detail"]] == [["body", "text"], ["body", "exclude", 0]]

            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {
                "broker": True, "index": True, "model": True, "consumer": True, "backfill_consumer": True
            }


async def wait_for_contributions(client: httpx.AsyncClient, headers: dict, count: int, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stats = await client.get("/v1/index/stats", headers=headers)
        assert stats.status_code == 200, stats.text
        if stats.json()["contributions"] >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, f"index holds {stats.json()} after {timeout}s"
        await asyncio.sleep(0.2)  # polling interval, not a wait for something to happen
