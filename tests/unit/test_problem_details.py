"""Every error answer is an RFC 9457 problem (`application/problem+json`), `detail` as it always was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.ingest.app import create_app as create_ingest
from services.ingest.settings import IngestSettings
from services.notifier.app import create_app as create_notifier
from services.notifier.settings import NotifierSettings
from tests.fakes import FakePublisher

pytestmark = pytest.mark.unit

ACME = {"Authorization": "Bearer acme-key"}
POST = {"id": "p1", "thread_id": "t1", "author_id": "u1", "kind": "question", "body": "Who knows Vault?"}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@asynccontextmanager
async def serving(app, **transport) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app, **transport), base_url="http://service"
        ) as http:
            yield http


def ingest_app(publisher, tmp_path):
    settings = IngestSettings(api_keys="acme-key:acme", data_dir=tmp_path, max_body_bytes=1_000,
                              max_request_bytes=20_000, max_batch=5)
    return create_ingest(settings, publisher=publisher)


@pytest.fixture
async def ingest(publisher, tmp_path):
    async with serving(ingest_app(publisher, tmp_path)) as http:
        yield http


@pytest.fixture
async def notifier(tmp_path):
    settings = NotifierSettings(api_keys="acme-key:acme", data_dir=tmp_path, consume=False)
    async with serving(create_notifier(settings)) as http:
        yield http


def problem(answer: httpx.Response, status: int, title: str) -> dict:
    """The answer's body, once it is checked to be the problem of this status."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert {key: body[key] for key in ("type", "title", "status")} == {"type": "about:blank", "title": title,
                                                                        "status": status}
    assert set(body) == {"type", "title", "status", "detail"}
    return body


def field_errors(body: dict) -> list[tuple[list, str]]:
    assert all({"loc", "msg", "type"} <= set(error) for error in body["detail"]), body
    return [(error["loc"], error["type"]) for error in body["detail"]]


async def test_401_a_missing_key(ingest, notifier):
    for answer in (await ingest.post("/v1/posts", json=POST), await notifier.get("/v1/subscriptions")):
        body = problem(answer, 401, "Unauthorized")
        assert body["detail"] == "missing or unknown API key: send Authorization: Bearer <key>"
        assert answer.headers["www-authenticate"] == "Bearer"


async def test_404_a_subscription_the_tenant_does_not_have(notifier):
    body = problem(await notifier.get("/v1/subscriptions/sub_nope", headers=ACME), 404, "Not Found")

    assert body["detail"] == "no subscription sub_nope"


async def test_404_and_405_of_paths_no_route_has(ingest):
    assert problem(await ingest.get("/v1/nowhere"), 404, "Not Found")["detail"] == "Not Found"
    assert problem(await ingest.get("/v1/posts", headers=ACME), 405, "Method Not Allowed")["detail"]


async def test_413_a_body_over_the_limit(ingest):
    too_long = problem(await ingest.post("/v1/posts", json={**POST, "body": "x" * 2_000}, headers=ACME),
                       413, "Content Too Large")
    assert field_errors(too_long) == [(["body", "body"], "too_large")]

    batch = {"posts": [{**POST, "id": f"p{i}"} for i in range(6)]}
    too_many = problem(await ingest.post("/v1/posts/batch", json=batch, headers=ACME), 413, "Content Too Large")
    assert field_errors(too_many) == [(["body", "posts"], "too_long")]


async def test_413_a_request_over_the_limit_before_it_is_read(ingest):
    # Refused by the size limit in front of the app, which answers the same problem.
    answer = await ingest.post("/v1/posts", content=b"x" * 30_000, headers={**ACME, "content-type": "application/json"})

    assert field_errors(problem(answer, 413, "Content Too Large")) == [(["body"], "too_large")]


async def test_422_a_post_that_is_not_valid(ingest, notifier):
    bad_kind = problem(await ingest.post("/v1/posts", json={**POST, "kind": "memo"}, headers=ACME),
                       422, "Unprocessable Content")
    assert field_errors(bad_kind) == [(["body", "kind"], "enum")]

    not_text = await ingest.post("/v1/posts", content=b"\xff", headers={**ACME, "content-type": "application/json"})
    not_json = problem(not_text, 422, "Unprocessable Content")
    assert field_errors(not_json) == [(["body"], "json_invalid")]

    bad_state = problem(await notifier.get("/v1/deliveries?state=lost", headers=ACME), 422, "Unprocessable Content")
    assert field_errors(bad_state) == [(["query", "state"], "enum")]


async def test_503_a_broker_that_is_down(ingest, publisher):
    publisher.down = True

    answer = await ingest.post("/v1/posts", json=POST, headers=ACME)

    body = problem(answer, 503, "Service Unavailable")
    assert body["detail"].startswith("the request cannot be stored right now")
    assert answer.headers["retry-after"] == "5"


async def test_500_a_failure_nobody_foresaw(publisher, tmp_path):
    async def broken(events) -> None:
        raise RuntimeError("a bug")

    publisher.publish = broken
    # The app raises on after answering, for the server to log; the client gets the answer.
    async with serving(ingest_app(publisher, tmp_path), raise_app_exceptions=False) as ingest:
        answer = await ingest.post("/v1/posts", json=POST, headers=ACME)

    body = problem(answer, 500, "Internal Server Error")
    assert "a bug" not in body["detail"]  # nothing of the failure's insides reaches the client
