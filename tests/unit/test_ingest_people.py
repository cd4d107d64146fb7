"""Erasing a person through ingest: the event it publishes, and the ids it refuses."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.events import PersonErased, event_key
from tests.unit.test_ingest_api import FakePublisher

pytestmark = pytest.mark.unit

ACME = {"Authorization": "Bearer acme-key"}


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher, tmp_path):
    settings = IngestSettings(api_keys="acme-key:acme,globex-key:globex", data_dir=tmp_path)
    app = create_app(settings, publisher=publisher)
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://ingest") as http:
            yield http


async def test_an_erasure_is_published_for_the_keys_tenant(client, publisher):
    answer = await client.delete("/v1/people/kim", headers=ACME)

    assert answer.status_code == 202
    assert answer.json() == {"person_id": "kim", "status": "accepted"}
    [event] = publisher.events
    assert isinstance(event, PersonErased)
    assert (event.tenant, event.data.person_id) == ("acme", "kim")
    assert event_key(event) == b"acme/kim"


async def test_the_id_is_stripped_like_a_posts_author_id(client, publisher):
    answer = await client.delete("/v1/people/%20kim%20", headers=ACME)

    assert answer.status_code == 202 and answer.json()["person_id"] == "kim"
    assert publisher.events[0].data.person_id == "kim"


@pytest.mark.parametrize("person_id", ["%20%20", "x" * 201])
async def test_a_blank_or_overlong_id_is_refused_naming_the_field(client, publisher, person_id):
    answer = await client.delete(f"/v1/people/{person_id}", headers=ACME)

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "person_id"]
    assert publisher.events == []


async def test_an_erasure_needs_a_known_key(client, publisher):
    assert (await client.delete("/v1/people/kim")).status_code == 401
    assert (await client.delete("/v1/people/kim", headers={"Authorization": "Bearer nope"})).status_code == 401
    assert publisher.events == []


async def test_a_broker_that_does_not_acknowledge_answers_503(client, publisher):
    publisher.down = True
    answer = await client.delete("/v1/people/kim", headers=ACME)

    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert publisher.events == []
