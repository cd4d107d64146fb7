"""The ingest API's validation, limits and error answers, with a fake publisher (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.events import PostDeleted, PostUpserted
from tests.fakes import FakePublisher

pytestmark = pytest.mark.unit

ACME = {"Authorization": "Bearer acme-key"}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher, tmp_path):
    settings = IngestSettings(
        api_keys="acme-key:acme,globex-key:globex",
        data_dir=tmp_path,
        max_body_bytes=1_000,
        max_request_bytes=20_000,
        max_batch=5,
    )
    app = create_app(settings, publisher=publisher)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as http:
            yield http


def a_post(**overrides) -> dict:
    post = {
        "id": "p1",
        "thread_id": "t1",
        "author_id": "u1",
        "kind": "question",
        "title": "How do I rotate the ledgerd database password?",
        "body": "The Vault lease expired overnight.",
    }
    post.update(overrides)
    return post


def error_locs(response: httpx.Response) -> list[list]:
    return [error["loc"] for error in response.json()["detail"]]


async def test_a_post_becomes_an_event_with_the_tenant_of_the_key(client, publisher):
    response = await client.post("/v1/posts", json=a_post(), headers=ACME)

    assert response.status_code == 202
    assert response.json() == {"id": "p1", "status": "accepted"}
    [event] = publisher.events
    assert isinstance(event, PostUpserted)
    assert event.tenant == "acme" and event.data.tenant == "acme"
    assert event.data.audience == ("public",)
    assert event.data.created_at.tzinfo is not None


async def test_html_is_stripped_and_naive_times_are_utc(client, publisher):
    body = "<p>Run <code>make deploy</code></p><script>alert(1)</script><ul><li>then wait</li></ul>"
    post = a_post(body=body, created_at="2026-03-01T10:00:00", url="https://intranet.example/t/1")

    response = await client.post("/v1/posts", json=post, headers=ACME)

    assert response.status_code == 202
    data = publisher.events[0].data
    assert data.body == "Run make deploy\nthen wait"
    assert data.created_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert data.url == "https://intranet.example/t/1"


async def test_a_title_is_made_one_line_of_plain_text_like_a_body(client, publisher):
    titles = ["<script>alert(1)</script>Kafka lag", "<b>Vault</b> &amp; CI\n tokens", "<p></p>", "if a < b"]
    for i, title in enumerate(titles):
        response = await client.post("/v1/posts", json=a_post(id=f"p{i}", title=title), headers=ACME)
        assert response.status_code == 202, response.text

    assert [event.data.title for event in publisher.events] == ["Kafka lag", "Vault & CI tokens", None, "if a < b"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": "  "}, "id"),
        ({"thread_id": ""}, "thread_id"),
        ({"body": ""}, "body"),
        ({"body": "<p> </p>"}, "body"),
        ({"kind": "poll"}, "kind"),
        ({"tags": [f"tag{i}" for i in range(21)]}, "tags"),
        ({"tags": ["x" * 65]}, "tags"),
        ({"url": "not a url"}, "url"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"audience": []}, "audience"),
        ({"score": "high"}, "score"),
        ({"tenant": "globex"}, "tenant"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_invalid_posts_get_a_422_naming_the_field(client, publisher, overrides, field):
    response = await client.post("/v1/posts", json=a_post(**overrides), headers=ACME)

    assert response.status_code == 422
    assert any(loc[:2] == ["body", field] for loc in error_locs(response)), response.json()
    assert publisher.events == []


def raw_json(value) -> dict:
    """A request body as JSON escapes it: a lone surrogate travels as the six characters \\ud800."""
    return {"content": json.dumps(value).encode(), "headers": {**ACME, "content-type": "application/json"}}


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"body": "x\ud800y"}, ["body", "body"]),
        ({"title": "Kafka \udfff lag"}, ["body", "title"]),
        ({"id": "p\ud83d"}, ["body", "id"]),
        ({"author_id": "u\x00"}, ["body", "author_id"]),
        ({"tags": ["ok", "b\udc00d"]}, ["body", "tags", 1]),
        ({"audience": ["\ud800"]}, ["body", "audience", 0]),
        ({"score": 10**28}, ["body", "score"]),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, ["body", "created_at"]),
        ({"created_at": "9999-12-31T23:00:00-05:00"}, ["body", "created_at"]),
    ],
)
async def test_text_no_encoder_takes_and_numbers_no_store_holds_get_a_422_naming_the_field(
    client, publisher, overrides, loc
):
    one = await client.post("/v1/posts", **raw_json(a_post(**overrides)))
    batch = await client.post("/v1/posts/batch", **raw_json({"posts": [a_post(id="p0"), a_post(**overrides)]}))

    assert (one.status_code, batch.status_code) == (422, 422), (one.text, batch.text)
    assert loc in error_locs(one)
    assert ["body", "posts", 1, *loc[1:]] in error_locs(batch)
    assert publisher.events == []


async def test_a_field_name_or_a_body_no_encoder_takes_gets_a_422(client, publisher):
    unknown = await client.post("/v1/posts", **raw_json(a_post(**{"col\ud800our": "blue"})))
    not_text = await client.post(
        "/v1/posts", content=b'{"id": "\xff\xfe"}', headers={**ACME, "content-type": "application/json"}
    )

    assert unknown.status_code == 422
    assert error_locs(unknown) == [["body"]]  # a name that is not text cannot be named
    assert unknown.json()["detail"][0]["input"] == "col\ufffdour"
    assert not_text.status_code == 422
    assert error_locs(not_text) == [["body"]]
    assert publisher.events == []


async def test_a_nul_in_an_id_of_the_path_or_query_gets_a_422_naming_it(client, publisher):
    post = await client.delete("/v1/posts/p%00", headers=ACME)
    thread = await client.delete("/v1/posts/p1", params={"thread_id": "t\x00"}, headers=ACME)
    person = await client.delete("/v1/people/u%00", headers=ACME)

    assert [error_locs(r) for r in (post, thread, person)] == [
        [["path", "post_id"]], [["query", "thread_id"]], [["path", "person_id"]]
    ]
    assert publisher.events == []


async def test_a_missing_field_is_named(client, publisher):
    post = a_post()
    del post["author_id"]

    response = await client.post("/v1/posts", json=post, headers=ACME)

    assert response.status_code == 422
    assert ["body", "author_id"] in error_locs(response)


async def test_a_tenant_in_the_body_is_refused_with_a_reason(client, publisher):
    response = await client.post("/v1/posts", json=a_post(tenant="globex"), headers=ACME)

    assert response.status_code == 422
    assert "API key" in response.json()["detail"][0]["msg"]
    assert publisher.events == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic acme-key"}])
async def test_without_a_known_key_it_is_401(client, publisher, headers):
    response = await client.post("/v1/posts", json=a_post(), headers=headers)

    assert response.status_code == 401
    assert publisher.events == []


async def test_a_body_over_the_limit_is_413_naming_body(client, publisher):
    response = await client.post("/v1/posts", json=a_post(body="x" * 1_001), headers=ACME)

    assert response.status_code == 413
    assert error_locs(response) == [["body", "body"]]
    assert "1000" in response.json()["detail"][0]["msg"]
    assert publisher.events == []


async def test_a_request_over_the_limit_is_413_before_parsing(client, publisher):
    # Not even JSON: the size alone must decide.
    response = await client.post("/v1/posts", content=b"{" * 20_001, headers=ACME)

    assert response.status_code == 413
    assert error_locs(response) == [["body"]]
    assert "20000" in response.json()["detail"][0]["msg"]


async def test_a_streamed_request_without_length_is_still_limited(client, publisher):
    async def chunks():
        for _ in range(30):
            yield b"x" * 1_000

    response = await client.post("/v1/posts", content=chunks(), headers=ACME)

    assert response.status_code == 413
    assert publisher.events == []


async def test_a_batch_is_all_sent(client, publisher):
    posts = [a_post(id=f"p{i}", kind="answer" if i else "question") for i in range(3)]

    response = await client.post("/v1/posts/batch", json={"posts": posts}, headers=ACME)

    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "ids": ["p0", "p1", "p2"]}
    assert [event.data.id for event in publisher.events] == ["p0", "p1", "p2"]


async def test_one_invalid_post_in_a_batch_sends_nothing(client, publisher):
    posts = [a_post(id="p0"), a_post(id="p1", kind="rant"), a_post(id="p2")]

    response = await client.post("/v1/posts/batch", json={"posts": posts}, headers=ACME)

    assert response.status_code == 422
    assert ["body", "posts", 1, "kind"] in error_locs(response)
    assert publisher.events == []


async def test_one_oversized_body_in_a_batch_sends_nothing(client, publisher):
    posts = [a_post(id="p0"), a_post(id="p1", body="y" * 1_001)]

    response = await client.post("/v1/posts/batch", json={"posts": posts}, headers=ACME)

    assert response.status_code == 413
    assert error_locs(response) == [["body", "posts", 1, "body"]]
    assert publisher.events == []


async def test_a_batch_over_the_maximum_says_the_limit(client, publisher):
    posts = [a_post(id=f"p{i}") for i in range(6)]

    response = await client.post("/v1/posts/batch", json={"posts": posts}, headers=ACME)

    assert response.status_code == 413
    assert "at most 5" in response.json()["detail"][0]["msg"]
    assert publisher.events == []


async def test_an_empty_batch_is_refused(client, publisher):
    response = await client.post("/v1/posts/batch", json={"posts": []}, headers=ACME)

    assert response.status_code == 422
    assert ["body", "posts"] in error_locs(response)


async def test_delete_publishes_post_deleted(client, publisher):
    response = await client.delete("/v1/posts/p9", params={"thread_id": "t9"}, headers=ACME)

    assert response.status_code == 202
    [event] = publisher.events
    assert isinstance(event, PostDeleted)
    assert (event.tenant, event.data.post_id, event.data.thread_id) == ("acme", "p9", "t9")


async def test_a_broker_that_is_down_is_a_503_to_retry(client, publisher):
    publisher.down = True

    response = await client.post("/v1/posts", json=a_post(), headers=ACME)

    assert response.status_code == 503
    assert "retry" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"
