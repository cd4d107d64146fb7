"""Ingest against a real broker: what a client posts is what lands on the posts topic."""

from __future__ import annotations

import uuid

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from asgi_lifespan import LifespanManager

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.embedded_broker import EmbeddedBroker
from shared.events import PostDeleted, PostUpserted, decode_event
from shared.kafka import make_consumer
from shared.topics import BACKFILL, POSTS
from tests.support.topics import create_topics, partitions, read_records

pytestmark = pytest.mark.integration

ACME = {"Authorization": "Bearer acme-key"}


@pytest.fixture
def settings(common_settings) -> IngestSettings:
    return IngestSettings(**common_settings.model_dump(), max_body_bytes=2_000)


@pytest.fixture
async def client(settings):
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


async def read_topic(settings: IngestSettings, count: int, lane: str = POSTS) -> list:
    """The `count` records of the posts topic (or `lane`), from its start."""
    return await read_records(settings, settings.topic(lane), count, timeout=10.0)


async def topic_size(settings: IngestSettings) -> int:
    """How many records the posts topic holds in all, from its end offsets."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(await partitions(consumer, settings.topic(POSTS)))).values())
    finally:
        await consumer.stop()


def a_post(**overrides) -> dict:
    post = {
        "id": "p1",
        "thread_id": "t1",
        "author_id": "maya",
        "kind": "question",
        "title": "Kafka lag on the orders consumer",
        "body": "<p>Lag is at <b>40k</b> since the deploy.</p>",
        "tags": ["kafka", "on-call"],
    }
    post.update(overrides)
    return post


async def test_a_post_lands_on_the_topic_with_the_tenant_of_the_key(client, settings):
    response = await client.post("/v1/posts", json=a_post(), headers=ACME)
    assert response.status_code == 202

    [record] = await read_topic(settings, 1)
    event = decode_event(record.value)
    assert isinstance(event, PostUpserted)
    assert record.key == b"acme/t1"
    assert event.tenant == "acme" and event.data.tenant == "acme"
    assert event.data.body == "Lag is at 40k since the deploy."
    assert event.data.tags == ("kafka", "on-call")


async def test_another_key_is_another_tenant(client, settings):
    response = await client.post("/v1/posts", json=a_post(), headers={"Authorization": "Bearer globex-key"})
    assert response.status_code == 202

    [record] = await read_topic(settings, 1)
    assert record.key == b"globex/t1"
    assert decode_event(record.value).data.tenant == "globex"


async def test_a_batch_lands_whole(client, settings):
    posts = [a_post(id="q"), a_post(id="a1", kind="answer", body="Restart it."), a_post(id="c1", kind="comment")]

    response = await client.post("/v1/posts/batch", json={"posts": posts}, headers=ACME)
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "ids": ["q", "a1", "c1"]}

    records = await read_topic(settings, 3)
    # One thread, one key, one partition: the order of the batch is kept.
    assert [decode_event(r.value).data.id for r in records] == ["q", "a1", "c1"]


async def test_a_delete_is_published_keyed_by_its_thread(client, settings):
    response = await client.delete("/v1/posts/a1", params={"thread_id": "t1"}, headers=ACME)
    assert response.status_code == 202

    [record] = await read_topic(settings, 1)
    event = decode_event(record.value)
    assert isinstance(event, PostDeleted)
    assert record.key == b"acme/t1"
    assert event.data.post_id == "a1"


async def test_refused_requests_put_nothing_on_the_topic(client, settings):
    refused = [
        await client.post("/v1/posts", json=a_post()),
        await client.post("/v1/posts", json=a_post(), headers={"Authorization": "Bearer wrong"}),
        await client.post("/v1/posts", json=a_post(kind="rant"), headers=ACME),
        await client.post("/v1/posts", json=a_post(body="z" * 2_001), headers=ACME),
        await client.post(
            "/v1/posts/batch", json={"posts": [a_post(id="ok"), a_post(id="", kind="answer")]}, headers=ACME
        ),
    ]

    assert [r.status_code for r in refused] == [401, 401, 422, 413, 422]
    assert ["body", "kind"] in [e["loc"] for e in refused[2].json()["detail"]]
    assert ["body", "posts", 1, "id"] in [e["loc"] for e in refused[4].json()["detail"]]
    assert await topic_size(settings) == 0


async def test_backfill_takes_its_own_lane_and_live_posts_keep_theirs(client, settings):
    batch = [a_post(id="old-1", backfill=True), a_post(id="live-1"), a_post(id="old-2", backfill=True)]
    response = await client.post("/v1/posts/batch", json={"posts": batch}, headers=ACME)
    assert response.status_code == 202

    live = [decode_event(r.value) for r in await read_topic(settings, 1)]
    backfill = [decode_event(r.value) for r in await read_topic(settings, 2, lane=BACKFILL)]
    assert [event.data.id for event in live] == ["live-1"]
    assert sorted(event.data.id for event in backfill) == ["old-1", "old-2"]


async def test_readiness_says_the_broker_answers(client):
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"broker": True}}


async def test_a_broker_that_went_away_is_a_503(common_settings, tmp_path):
    own = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    create_topics(own.bootstrap_servers, common_settings.kafka_topic_prefix)
    fields = common_settings.model_dump() | {"kafka_bootstrap_servers": own.bootstrap_servers}
    settings = IngestSettings(**fields, publish_timeout_s=2)
    try:
        app = create_app(settings)
        async with LifespanManager(app, shutdown_timeout=30) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
                assert (await http.post("/v1/posts", json=a_post(), headers=ACME)).status_code == 202
                own.stop()

                response = await http.post("/v1/posts", json=a_post(id="p2"), headers=ACME)
                ready = await http.get("/readyz")
    finally:
        own.stop()

    assert response.status_code == 503
    assert "retry" in response.json()["detail"]
    assert ready.status_code == 503
    assert "does not answer" in ready.json()["failing"]["broker"]


async def test_a_missing_topic_is_a_503_and_is_never_created_by_ingest(broker, tmp_path):
    # A prefix whose topics nobody created: as after a broker restart, before the owner re-creates them.
    settings = IngestSettings(
        api_keys="acme-key:acme",
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_topic_prefix=f"missing{uuid.uuid4().hex[:8]}-",
        data_dir=tmp_path,
        publish_timeout_s=5,
    )
    app = create_app(settings)
    async with LifespanManager(app, shutdown_timeout=30) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            response = await http.post("/v1/posts", json=a_post(), headers=ACME)
            ready = await http.get("/readyz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "does not exist" in response.json()["detail"]
    assert ready.status_code == 503
    assert ready.json()["failing"]["broker"].startswith(f"missing on the broker: {settings.topic('posts')}, ")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        assert settings.topic("posts") not in await admin.list_topics()
    finally:
        await admin.close()
