"""`/docs` and `/redoc` of each service work on an intranet with no way out: every asset comes from the service."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.apps import service_app
from tests.support.services import SERVICES

pytestmark = pytest.mark.unit

ASSET = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.fixture(params=SERVICES)
async def client(request, tmp_path):
    # The pages and their assets are served without the running service (no broker, model or
    # database), so the lifespan is left out: the matcher's would need a broker.
    app = service_app(request.param, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as http:
        yield http


def urls_of(page: str) -> list[str]:
    """Every script, stylesheet, icon and document the page loads."""
    return [next(group for group in match.groups() if group) for match in ASSET.finditer(page)]


@pytest.mark.parametrize(
    ("page", "needs"),
    [("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}), ("/redoc", {"redoc.standalone.js"})],
)
async def test_the_api_pages_load_everything_from_the_service(client, page, needs):
    answer = await client.get(page)

    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    urls = urls_of(answer.text)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= needs | {"openapi.json"}
    assert [url for url in urls if not url.startswith("/")] == []  # no CDN, no font service: nothing off the host
    for url in urls:
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1_000, url
    scripts = [url for url in urls if url.endswith(".js")]
    for url in scripts:
        assert (await client.get(url)).headers["content-type"].startswith(("text/javascript", "application/javascript"))


async def test_swagger_ui_is_a_build_that_reads_openapi_3_1(client):
    # FastAPI writes OpenAPI 3.1, which Swagger UI reads from version 5 on.
    page = (await client.get("/docs")).text
    [bundle] = [url for url in urls_of(page) if url.endswith("swagger-ui-bundle.js")]
    script = (await client.get(bundle)).text

    assert re.search(r'"5\.\d+\.\d+"', script)
    assert "openapi: 3.1" in script
