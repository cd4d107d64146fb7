"""Prometheus metrics of every service, served on `/metrics`.

One process runs one service, so each metric is defined once here, in the process's default
registry, and a service only fills the ones it has. Labels are bounded, never an id:
- `route` is the route's template (`/v1/invitations/{invitation_id}`), `unmatched` for a path no route has;
- `consumer`, `topic`, `partition` come from deploy/topics.json and the services' few loops;
- `reason`, `outcome`, `state` are the values of enums (skip reasons, delivery states);
- `status` is an HTTP status code, or `error` when no answer came.
No metric has a tenant, person, thread or post label: their number grows with the company.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import ServerSpans

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

HTTP_REQUESTS = Counter("expertmatch_http_requests", "HTTP requests answered", ["method", "route", "status"])
HTTP_SECONDS = Histogram("expertmatch_http_request_duration_seconds", "Time to answer an HTTP request",
                         ["method", "route"], buckets=_FAST)

CONSUMED = Counter("expertmatch_consumer_records", "Records a consumer loop is done with, by outcome",
                   ["consumer", "topic", "outcome"])  # handled | skipped | dead_lettered
DEAD_LETTERS = Counter("expertmatch_dead_letters", "Records set aside on <topic>.dlq", ["topic"])
BATCH_SIZE = Histogram("expertmatch_consumer_batch_size", "Records per batch handled", ["consumer"], buckets=_COUNTS)
HANDLE_SECONDS = Histogram("expertmatch_consumer_handle_seconds", "Time to handle one batch", ["consumer"],
                           buckets=_SLOW)
RETRIES = Counter("expertmatch_consumer_retries", "Batches retried after a transient failure", ["consumer"])
LAG = Gauge("expertmatch_consumer_lag", "Records on the broker the loop has not read yet, as of its last poll",
            ["consumer", "topic", "partition"])

EMBED_SECONDS = Histogram("expertmatch_embed_seconds", "Time to embed one batch of texts", buckets=_SLOW)
EMBED_BATCH = Histogram("expertmatch_embed_batch_size", "Texts per embedding call", buckets=_COUNTS)
RANK_SECONDS = Histogram("expertmatch_rank_seconds", "Time to rank the people for one question or search",
                         buckets=_FAST)
POOL_SIZE = Histogram("expertmatch_rank_pool_size", "People considered for one question or search",
                      buckets=(0, 5, 10, 25, 50, 100, 250, 500, 1000))
CANDIDATES = Histogram("expertmatch_rank_candidates", "People ranked for one question or search",
                       buckets=(0, 1, 2, 3, 5, 8, 13, 20, 50))
QUESTIONS_MATCHED = Counter("expertmatch_questions_matched", "Questions the matcher published a match for")

INVITATIONS = Counter("expertmatch_invitations", "Invitations created, by how", ["how"])  # match | escalation
SKIPS = Counter("expertmatch_invitation_skips", "Candidates passed over, by the policy's reason", ["reason"])
DELIVERIES = Counter("expertmatch_webhook_deliveries", "Webhook attempts, by answer and the delivery's state after",
                     ["status", "state"])
DELIVERY_ATTEMPT = Histogram("expertmatch_webhook_attempt", "Which attempt of its delivery a webhook request was",
                             buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20))
DELIVERY_SECONDS = Histogram("expertmatch_webhook_request_duration_seconds", "Time for the receiver to answer",
                             buckets=_FAST)


def instrument(app: FastAPI) -> None:
    """Count, time and trace every request by route; serve `/metrics` (no API key: no tenant's data)."""
    app.add_middleware(ServerSpans, route_of=_route)
    app.add_middleware(_HttpMetrics)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


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

