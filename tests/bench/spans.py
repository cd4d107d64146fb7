"""Where a question's time goes: an OTLP/HTTP receiver for the services' spans, and the stages read off them.

The services export their spans here when `OTEL_EXPORTER_OTLP_ENDPOINT` names it (shared/tracing.py).
Every process runs on this machine, so their wall clocks agree and one span's start can be
subtracted from another's end.
"""

from __future__ import annotations

import statistics
import threading
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# The stages of one question, in the order it passes them; each is (start, end) in seconds.
STAGES = (
    "ingest: POST answered (publish acked)",
    "matcher: poll wait",
    "matcher: embed",
    "matcher: index write",
    "matcher: rank",
    "matcher: match publish",
    "notifier: poll wait",
    "notifier: record",
    "notifier: delivery wait",
    "notifier: webhook POST -> receiver",
)


@dataclass(frozen=True, slots=True)
class Span:
    service: str
    name: str
    trace_id: bytes
    start: float  # seconds since the epoch
    end: float
    links: tuple[bytes, ...]  # trace ids of the linked events


class SpanCollector:
    """Keeps every span exported to `endpoint`; `spans_of(trace_id)` are a question's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_trace: dict[bytes, list[Span]] = defaultdict(list)
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start the collector first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def spans_of(self, trace_id: bytes) -> list[Span]:
        with self._lock:
            return list(self._by_trace.get(trace_id, ()))

    def _keep(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self._lock:
            for resource in request.resource_spans:
                service = next((a.value.string_value for a in resource.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        span = Span(service, s.name, s.trace_id, s.start_time_unix_nano / 1e9,
                                    s.end_time_unix_nano / 1e9, tuple(link.trace_id for link in s.links))
                        for trace_id in {span.trace_id, *span.links}:
                            self._by_trace[trace_id].append(span)

    def __enter__(self) -> SpanCollector:
        collector = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                collector._keep(self.rfile.read(int(self.headers.get("content-length", 0))))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="otlp-collector", daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _first(spans: list[Span], service: str, name: str) -> Span | None:
    found = [s for s in spans if s.service.endswith(service) and s.name == name]
    return min(found, key=lambda s: s.start) if found else None


def stages(spans: list[Span], arrived: float) -> dict[str, float] | None:
    """Seconds per stage of one question's trace, `arrived` being its first webhook at the receiver;
    None while a span it needs has not been exported yet."""
    posted = _first(spans, "ingest", "POST /v1/posts")
    handled = _first(spans, "matcher", "handle matcher")
    embed = _first(spans, "matcher", "embed")
    index = _first(spans, "matcher", "index")
    rank = _first(spans, "matcher", "match question")
    published = _first(spans, "matcher", "publish matches")
    taken = _first(spans, "notifier", "handle notifier")
    record = _first(spans, "notifier", "record match")
    deliver = _first(spans, "notifier", "deliver invitation.created")
    needed = (posted, handled, embed, index, rank, published, taken, record, deliver)
    if any(span is None for span in needed):
        return None
    edges = (
        (posted.start, posted.end), (posted.end, handled.start), (embed.start, embed.end),
        (index.start, index.end), (rank.start, rank.end), (published.start, published.end),
        (published.end, taken.start), (record.start, record.end), (record.end, deliver.start),
        (deliver.start, arrived),
    )
    return {stage: end - start for stage, (start, end) in zip(STAGES, edges, strict=True)}


def breakdown(per_question: list[dict[str, float]], totals: list[float]) -> list[tuple[str, float, float]]:
    """(stage, p50, p95) in ms over the questions, then what the stages leave unexplained."""
    rows = []
    for stage in STAGES:
        values = [q[stage] for q in per_question]
        rows.append((stage, pct(values, 50) * 1000, pct(values, 95) * 1000))
    rest = [total - sum(q.values()) for q, total in zip(per_question, totals, strict=True)]
    rows.append(("the rest (client, handler bookkeeping between spans)", pct(rest, 50) * 1000, pct(rest, 95) * 1000))
    return rows


def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
