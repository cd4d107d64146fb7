"""What `make fuzz` checks, on fewer examples: no server error, every answer as each OpenAPI document says."""

from __future__ import annotations

import httpx
import pytest

from tests.fuzz.run import KEY, fuzz_service, log_errors, running_services
from tests.support.services import SERVICES

pytestmark = pytest.mark.e2e

EXAMPLES = 15


@pytest.fixture(scope="module")
def services(broker, tmp_path_factory):
    with running_services(tmp_path_factory.mktemp("fuzz"), bootstrap_servers=broker.bootstrap_servers) as running:
        yield running


@pytest.mark.parametrize("service", SERVICES)
def test_every_answer_is_documented_and_none_is_a_server_error(services, service, tmp_path):
    report = fuzz_service(service, services.url(service), examples=EXAMPLES, seed=1, timeout=240, work_dir=tmp_path)

    assert report.error is None, report.error
    assert report.operations > 0 and report.cases >= report.operations, report.line()
    assert (report.server_errors, report.failures) == (0, []), report.line()
    # Nor did what was accepted break anything behind the API (a consumer, a dead letter).
    assert log_errors(services) == {name: [] for name in SERVICES}


def test_a_refused_subscription_url_leaves_the_connection_usable(services):
    # A 500 used to drop the keep-alive connection, and the client's next request on it failed.
    bad = ["http://127.0.0.1:80%40example.com/", "http://host.example:abc/", "http://host.example:99999/", "http://[::1]:x/"]
    with httpx.Client(base_url=services.url("notifier"), headers={"Authorization": f"Bearer {KEY}"}) as client:
        for url in bad:
            refused = client.post("/v1/subscriptions", json={"url": url})
            assert refused.status_code == 422, refused.text
            assert [e["loc"] for e in refused.json()["detail"]] == [["body", "url"]]
            assert client.get("/v1/subscriptions").status_code == 200
