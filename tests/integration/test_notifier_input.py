"""Bad input to the notifier's API gets a 422 naming the field, on SQLite and on PostgreSQL, and changes nothing."""

import json

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.notifier.app import create_app
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.integration

ACME = {"authorization": "Bearer acme-key"}
JSON = {**ACME, "content-type": "application/json"}


async def public_dns(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request, common_settings):
    overrides = {"database_url": request.getfixturevalue("postgres_url")} if request.param == "postgres" else {}
    settings = NotifierSettings(**common_settings.model_dump(), consume=False, **overrides)
    app = create_app(settings, resolver=public_dns)
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://notifier"
        ) as client:
            yield client


def locs(response: httpx.Response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


def raw(value) -> bytes:
    """JSON as an encoder that escapes writes it: a lone surrogate travels as \\ud800."""
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "https://hooks.example/\ud800"}, ["body", "url"]),
        ({"url": "https://hooks.example/in", "description": "for \udfff us"}, ["body", "description"]),
        ({"url": "https://hooks.example/in", "description": "nul \x00 here"}, ["body", "description"]),
    ],
)
async def test_subscription_text_no_store_takes_is_a_422(api, body, loc):
    assert locs(await api.post("/v1/subscriptions", content=raw(body), headers=JSON)) == [loc]
    assert (await api.get("/v1/subscriptions", headers=ACME)).json() == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:80%40example.com/",
        "http://hooks.example:abc/",
        "http://hooks.example:99999/",
        "http://[::1]:x/",
        "http://hooks.example:0/",
        "http://[::1/",
        "http://hooks.example/a\x01b",
    ],
)
async def test_a_url_with_a_bad_port_or_form_is_a_422_naming_url(api, url):
    refused = await api.post("/v1/subscriptions", json={"url": url}, headers=ACME)

    assert locs(refused) == [["body", "url"]]
    assert (await api.get("/v1/subscriptions", headers=ACME)).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_per_week": 10**28}, "max_per_week"),
        ({"max_per_day": 2**63}, "max_per_day"),
        ({"max_per_day": 1_001}, "max_per_day"),
        ({"max_per_week": 7_001}, "max_per_week"),
        ({"snoozed_until": "0001-01-01T00:00:00+01:00"}, "snoozed_until"),
        ({"snoozed_until": "9999-12-31T23:59:59-01:00"}, "snoozed_until"),
    ],
)
async def test_preferences_no_column_holds_are_a_422_and_the_old_ones_stay(api, body, field):
    kept = await api.put("/v1/people/u-dan/preferences", json={"max_per_day": 2}, headers=ACME)
    assert kept.status_code == 200, kept.text

    assert locs(await api.put("/v1/people/u-dan/preferences", json=body, headers=ACME)) == [["body", field]]
    assert (await api.get("/v1/people/u-dan/preferences", headers=ACME)).json()["max_per_day"] == 2


async def test_the_largest_caps_are_kept(api):
    saved = await api.put(
        "/v1/people/u-dan/preferences", json={"max_per_day": 1_000, "max_per_week": 7_000}, headers=ACME
    )

    assert saved.status_code == 200, saved.text
    read = (await api.get("/v1/people/u-dan/preferences", headers=ACME)).json()
    assert (read["max_per_day"], read["max_per_week"]) == (1_000, 7_000)


async def test_ids_no_store_takes_in_the_path_or_query_are_a_422_naming_them(api):
    answers = {
        ("path", "person_id"): await api.get("/v1/people/u%00/preferences", headers=ACME),
        ("path", "thread_id"): await api.get("/v1/threads/t%00/invitations", headers=ACME),
        ("path", "subscription_id"): await api.get("/v1/subscriptions/sub%00", headers=ACME),
        ("path", "invitation_id"): await api.post(
            "/v1/invitations/inv%00/response", json={"response": "answered"}, headers=ACME
        ),
        ("query", "thread_id"): await api.get("/v1/invitations", params={"thread_id": "t\x00"}, headers=ACME),
        ("query", "subscription_id"): await api.get("/v1/deliveries", params={"subscription_id": "\x00"}, headers=ACME),
        ("query", "since"): await api.post(
            "/v1/subscriptions/sub_x/replay", params={"since": "0001-01-01T00:00:00+01:00"}, headers=ACME
        ),
    }
    assert {loc: locs(answer) for loc, answer in answers.items()} == {loc: [list(loc)] for loc in answers}
