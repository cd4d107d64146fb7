"""`/metrics` of the three services as processes, scraped after a question was invited, as Prometheus would."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.history import HISTORY, subscribe_and_index_history
from tests.support.receiver import Receiver
from tests.support.services import ServiceProcesses
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ACME = {"Authorization": "Bearer acme-key"}

QUESTION = {
    "id": "q-metrics", "thread_id": "q-metrics", "author_id": "dana", "kind": "question",
    "title": "Kubernetes pod keeps getting OOMKilled and restarting",
    "body": "Our payments pod restarts with OOMKilled every few hours. Which limit do I raise?",
    "tags": ["kubernetes"],
}


@pytest.fixture
def system(broker, topic_prefix, tmp_path):
    services = ServiceProcesses.of_test(
        broker, topic_prefix, tmp_path,
        extra_env={"NOTIFIER_MIN_SIMILARITY": "-1"},
    )
    with services:
        yield services


class Scrape:
    """One scrape of a service: samples by name, each a (labels, value) list."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def total(self, name: str, **labels: str) -> float:
        return sum(value for found, value in self.samples.get(name, ()) if labels.items() <= found.items())


async def _scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    answer = await http.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")  # the text exposition format
    return Scrape(answer.text)


async def test_metrics_tell_what_happened_to_a_question_without_naming_anyone(system):
    with Receiver() as receiver:
        async with httpx.AsyncClient(timeout=30) as http:
            scrapes = await _a_question_invited(system, http, receiver)
    _check(scrapes)


async def _a_question_invited(system, http: httpx.AsyncClient, receiver: Receiver) -> dict[str, Scrape]:
    await subscribe_and_index_history(http, system, receiver, headers=ACME)
    assert (await http.post(f"{system.url('ingest')}/v1/posts", headers=ACME, json=QUESTION)).status_code == 202
    assert (await http.delete(f"{system.url('ingest')}/v1/posts/nope")).status_code == 401

    async def invited():
        return any(b'"q-metrics"' in request.body for request in receiver.acknowledged())

    await until(invited, timeout=120, what="an invitation to the question")

    async def scraped():
        scrapes = {name: await _scrape(http, system.url(name)) for name in ("ingest", "matcher", "notifier")}
        # Lag is measured every few seconds, deliveries counted once recorded: wait for both, and for
        # every invitation's webhook to be out (the question may invite more people than the one awaited).
        notifier = scrapes["notifier"]
        ready = (scrapes["matcher"].samples.get("expertmatch_consumer_lag")
                 and notifier.total("expertmatch_webhook_deliveries_total", state="delivered") >= 1
                 and notifier.samples.get("expertmatch_webhook_deliveries_pending") == [({}, 0.0)])
        return scrapes if ready else None

    return await until(scraped, timeout=60, what="the consumer lag and a delivery in the scrapes")


def _check(scrapes: dict[str, Scrape]) -> None:
    ingest, matcher, notifier = scrapes["ingest"], scrapes["matcher"], scrapes["notifier"]
    assert ingest.total("expertmatch_http_requests_total", method="POST", route="/v1/posts", status="202") == 1
    assert ingest.total("expertmatch_http_requests_total", method="POST", route="/v1/posts/batch", status="202") == 1
    assert ingest.total("expertmatch_http_requests_total", route="/v1/posts/{post_id}", status="401") == 1
    assert ingest.total("expertmatch_http_request_duration_seconds_count", route="/v1/posts") == 1

    # Every post was handled on one lane or the other (the history is a batch, so not backfill).
    handled = matcher.total("expertmatch_consumer_records_total", outcome="handled")
    assert handled >= len(HISTORY) + 1
    assert matcher.total("expertmatch_consumer_batch_size_count") >= 1
    assert matcher.total("expertmatch_embed_batch_size_sum") >= len(HISTORY) + 1
    assert matcher.total("expertmatch_rank_seconds_count") >= 1
    assert matcher.total("expertmatch_questions_matched_total") >= 1
    assert matcher.total("expertmatch_rank_candidates_count") >= 1
    assert all(value >= 0 for _, value in matcher.samples["expertmatch_consumer_lag"])

    assert notifier.total("expertmatch_invitations_total", how="match") >= 1
    assert notifier.total("expertmatch_webhook_deliveries_total", state="delivered") >= 1
    assert notifier.total("expertmatch_webhook_attempt_count") >= 1
    assert notifier.total("expertmatch_consumer_records_total", consumer="notifier", outcome="handled") >= 1

    # Read from the store at scrape time: every webhook went out, no endpoint is disabled.
    assert notifier.total("expertmatch_webhook_deliveries_pending") == 0
    assert notifier.total("expertmatch_webhook_deliveries_overdue") == 0
    assert notifier.total("expertmatch_webhook_oldest_due_seconds") == 0
    assert notifier.total("expertmatch_webhook_endpoints_disabled") == 0
    assert matcher.samples["expertmatch_index_contributions"] == [({"tenant": "acme"}, len(HISTORY) + 1)]

    # Each service shows its own families (and the process's), not another's at 0.
    assert "expertmatch_embed_seconds_count" not in ingest.samples | notifier.samples
    assert "expertmatch_invitations_total" not in ingest.samples | matcher.samples
    assert "expertmatch_consumer_records_total" not in ingest.samples
    assert all(scrape.total("process_resident_memory_bytes") > 0 for scrape in scrapes.values())

    # Bounded labels: no person, thread or post ever names a series, and a tenant only the index size,
    # whose tenants are the configured ones.
    for name, scrape in scrapes.items():
        for metric, samples in scrape.samples.items():
            for labels, _ in samples:
                assert metric == "expertmatch_index_contributions" or "tenant" not in labels, (name, metric)
                for value in labels.values():
                    assert not any(word in value for word in ("dana", "q-metrics", "inv_")), labels
