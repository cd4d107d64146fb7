"""Prometheus metrics of every service, served on `/metrics`.

Each metric is defined once here, outside any registry; `instrument` gives a service's app a
registry of the families that service fills (`INGEST`, `MATCHER`, `NOTIFIER`), the process's own
(`process_*`, `python_*`), and gauges read from its store at scrape time (`Sampled`). Labels are
bounded, never an id:
- `route` is the route's template (`/v1/invitations/{invitation_id}`), `unmatched` for a path no route has;
- `consumer`, `topic`, `partition` come from deploy/topics.json and the services' few loops;
- `reason`, `outcome`, `state` are the values of enums (skip reasons, delivery states);
- `status` is an HTTP status code, or `error` when no answer came;
- `tenant` only on `expertmatch_index_contributions`, and only the tenants the API keys configure.
No metric has a person, thread or post label: their number grows with the company.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import ServerSpans

log = logging.getLogger(__name__)

# Outside the default registry: a registry per app holds only its service's families.
_counter = functools.partial(Counter, registry=None)
_gauge = functools.partial(Gauge, registry=None)
_histogram = functools.partial(Histogram, registry=None)

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

HTTP_REQUESTS = _counter("expertmatch_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = _histogram("expertmatch_http_request_duration_seconds", "Time to answer an HTTP request",
                          ["method", "route"], buckets=_FAST)

CONSUMED = _counter("expertmatch_consumer_records", "Records a consumer loop is done with, by outcome",
                    ["consumer", "topic", "outcome"])  # handled | skipped | dead_lettered
DEAD_LETTERS = _counter("expertmatch_dead_letters", "Records set aside on <topic>.dlq", ["topic"])
BATCH_SIZE = _histogram("expertmatch_consumer_batch_size", "Records per batch handled", ["consumer"], buckets=_COUNTS)
HANDLE_SECONDS = _histogram("expertmatch_consumer_handle_seconds", "Time to handle one batch", ["consumer"],
                            buckets=_SLOW)
RETRIES = _counter("expertmatch_consumer_retries", "Batches retried after a transient failure", ["consumer"])
LAG = _gauge("expertmatch_consumer_lag", "Records on the broker the loop has not read yet, as of its last poll",
             ["consumer", "topic", "partition"])

EMBED_SECONDS = _histogram("expertmatch_embed_seconds", "Time to embed one batch of texts", buckets=_SLOW)
EMBED_BATCH = _histogram("expertmatch_embed_batch_size", "Texts per embedding call", buckets=_COUNTS)
RANK_SECONDS = _histogram("expertmatch_rank_seconds", "Time to rank the people for one question or search",
                          buckets=_FAST)
POOL_SIZE = _histogram("expertmatch_rank_pool_size", "People considered for one question or search",
                       buckets=(0, 5, 10, 25, 50, 100, 250, 500, 1000))
CANDIDATES = _histogram("expertmatch_rank_candidates", "People ranked for one question or search",
                        buckets=(0, 1, 2, 3, 5, 8, 13, 20, 50))
QUESTIONS_MATCHED = _counter("expertmatch_questions_matched", "Questions the matcher published a match for")

INVITATIONS = _counter("expertmatch_invitations", "Invitations created, by how", ["how"])  # match | escalation
SKIPS = _counter("expertmatch_invitation_skips", "Candidates passed over, by the policy's reason", ["reason"])
DELIVERIES = _counter("expertmatch_webhook_deliveries", "Webhook attempts, by answer and the delivery's state after",
                      ["status", "state"])
DELIVERY_ATTEMPT = _histogram("expertmatch_webhook_attempt", "Which attempt of its delivery a webhook request was",
                              buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20))
DELIVERY_SECONDS = _histogram("expertmatch_webhook_request_duration_seconds", "Time for the receiver to answer",
                              buckets=_FAST)



@dataclass(frozen=True, slots=True)
class ReadGauge:
    """A gauge read from a store at scrape time (`Sampled`): never stale, absent when the read failed."""

    name: str
    documentation: str
    labels: tuple[str, ...] = ()

    def of(self, value: float | Mapping[tuple[str, ...], float]) -> GaugeMetricFamily:
        """The family with `value`, or one sample per label values in a mapping."""
        family = GaugeMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, sample in (value.items() if isinstance(value, Mapping) else [((), value)]):
            family.add_metric(list(labels), sample)
        return family


DELIVERIES_PENDING = ReadGauge("expertmatch_webhook_deliveries_pending",
                               "Webhooks not delivered yet: due now or waiting to be retried")
DELIVERIES_DUE = ReadGauge("expertmatch_webhook_deliveries_due", "Webhooks whose time to be sent has come")
DELIVERIES_OVERDUE = ReadGauge("expertmatch_webhook_deliveries_overdue",
                               "Webhooks due for longer than a minute: sending is behind")
OLDEST_DUE = ReadGauge("expertmatch_webhook_oldest_due_seconds",
                       "How long the longest-waiting due webhook has been due; 0 when none is")
ENDPOINTS_DISABLED = ReadGauge("expertmatch_webhook_endpoints_disabled",
                               "Webhook subscriptions disabled (410 Gone, or failing for too long)")
ENDPOINTS_FAILING = ReadGauge("expertmatch_webhook_endpoints_failing",
                              "Active webhook subscriptions whose attempts fail since their last success")
INDEX_CONTRIBUTIONS = ReadGauge("expertmatch_index_contributions", "Contributions the index holds, per tenant",
                                ("tenant",))

_CONSUMER = (CONSUMED, DEAD_LETTERS, BATCH_SIZE, HANDLE_SECONDS, RETRIES, LAG)
INGEST = (HTTP_REQUESTS, HTTP_SECONDS)
MATCHER = (*INGEST, *_CONSUMER, EMBED_SECONDS, EMBED_BATCH, RANK_SECONDS, POOL_SIZE, CANDIDATES, QUESTIONS_MATCHED)
NOTIFIER = (*INGEST, *_CONSUMER, INVITATIONS, SKIPS, DELIVERIES, DELIVERY_ATTEMPT, DELIVERY_SECONDS)


Read = Callable[[], Awaitable[Iterable[Metric]]]


class Sampled(Collector):
    """Gauges a service reads from its store when it is scraped.

    `read` is awaited before each scrape, within `timeout`; a read that fails or is too slow leaves
    its gauges out of that scrape (an alert on `absent()` sees it) rather than showing old values.
    """

    def __init__(self, read: Read, *, timeout: float = 2.0) -> None:
        self._read = read
        self._timeout = timeout
        self._families: list[Metric] = []

    async def refresh(self) -> None:
        try:
            self._families = list(await asyncio.wait_for(self._read(), self._timeout))
        except Exception as exc:
            self._families = []
            log.warning("metrics read at scrape time failed: %s", exc or type(exc).__name__)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def instrument(app: FastAPI, families: Iterable[Collector] = INGEST, *, read: Read | None = None) -> None:
    """Count, time and trace every request by route; serve `/metrics` (no API key: no tenant's data).

    The scrape holds `families`, the process's own metrics, and the gauges `read` returns at scrape time.
    """
    app.add_middleware(ServerSpans, route_of=_route)
    app.add_middleware(_HttpMetrics)
    registry = CollectorRegistry()
    for collector in (*families, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    sampled = Sampled(read) if read is not None else None
    if sampled is not None:
        registry.register(sampled)
    scraping = asyncio.Lock()  # two scrapes at once: each shows the gauges it read

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        async with scraping:
            if sampled is not None:
                await sampled.refresh()
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any answer

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route = _route(scope)
            if route != "/metrics":
                method = scope["method"]
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    if route is not None:
        return route.path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return candidate.path
    return "unmatched"

