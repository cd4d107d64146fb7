"""OpenTelemetry traces: one trace per question, from `POST /v1/posts` to the webhook attempt.

The W3C trace context (`traceparent`, `tracestate`) travels in each Kafka record's headers and
in the notifier's database beside each delivery, so the spans of one question form one trace:

    ingest    POST /v1/posts                   (server span; a `traceparent` the intranet sent is its parent)
    matcher   match question                   (parent: the post's record)
    notifier  record match                     (parent: the match's record)
    notifier  deliver invitation.created       (parent: the match, read back with the delivery)

Work done for a whole batch at once (a consumer's handling, the matcher's embedding, index write
and publish) is one span per batch, linked to the trace of each event in it (`batch_span`).

Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the standard
OTEL_* variables configure the exporter); when it is not, no provider is installed and every
call here costs next to nothing.

Handlers get events, not records, so the loop records each event's context by its id
(`received`) and domain code asks for it (`span(name, event)`); `headers(event)` gives what a
producer sends with it: the context of the span that made the event, else the current one.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from uuid import UUID

from opentelemetry import context as otel_context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

_TRACER = "expertmatch"
# Contexts of events in flight, by event id: those received (the parent of their handling) and
# those made inside a span (the parent of whoever receives them). Bounded: an event handled long
# ago needs none.
_CONTEXTS: OrderedDict[UUID, Context] = OrderedDict()
_KEEP = 10_000


def configure_tracing(service: str) -> bool:
    """Export this process's spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; True if so."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"expertmatch-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Flush what is left to export (a provider installed by `configure_tracing`)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER)


def received(event_id: UUID, headers: Sequence[tuple[str, bytes]] | None) -> None:
    """A consumer got this event with these record headers: remember its trace context."""
    carrier = {name: value.decode("latin-1") for name, value in headers or () if name in ("traceparent", "tracestate")}
    if "traceparent" in carrier:
        _keep(event_id, propagate.extract(carrier))


def remember(event_id: UUID) -> None:
    """An event made now, inside the current span: whoever receives it continues this trace."""
    if trace.get_current_span().get_span_context().is_valid:
        _keep(event_id, otel_context.get_current())


def headers(event_id: UUID | None) -> list[tuple[str, bytes]]:
    """The trace headers to send with this event (none outside any trace)."""
    return [(name, value.encode("latin-1")) for name, value in _carrier(event_id).items()]


def traceparent(event_id: UUID | None = None) -> str | None:
    """The `traceparent` of this event's context, or of the current one: stored to continue later."""
    return _carrier(event_id).get("traceparent")


def _carrier(event_id: UUID | None) -> dict[str, str]:
    """The W3C headers of the event's context, else of the current one."""
    carrier: dict[str, str] = {}
    context = _CONTEXTS.get(event_id) if event_id is not None else None
    propagate.inject(carrier, context=context or otel_context.get_current())
    return carrier


@contextmanager
def span(name: str, *, event_id: UUID | None = None, parent: str | None = None,
         kind: SpanKind = SpanKind.INTERNAL, **attributes: str | int | float) -> Iterator[Span]:
    """A span whose parent is the event's received context, or a stored `traceparent`, else the current span."""
    context = None
    if event_id is not None:
        context = _CONTEXTS.get(event_id)
    elif parent:
        context = propagate.extract({"traceparent": parent})
    with tracer().start_as_current_span(name, context=context, kind=kind, attributes=attributes) as current:
        yield current


# The SDK keeps at most 128 links per span by default; a batch names no more than that.
_MAX_LINKS = 128


@contextmanager
def batch_span(name: str, event_ids: Sequence[UUID], **attributes: str | int | float) -> Iterator[Span]:
    """A span for work on a batch of events, linked to each event's trace; it is not made current.

    Not current, so that what the batch's handling sends continues each event's own trace, never
    this span's.
    """
    links = [
        trace.Link(trace.get_current_span(context).get_span_context())
        for context in (_CONTEXTS.get(event_id) for event_id in event_ids[:_MAX_LINKS])
        if context is not None
    ]
    current = tracer().start_span(
        name, context=Context(), links=links, attributes={"expertmatch.batch": len(event_ids), **attributes}
    )
    try:
        yield current
    finally:
        current.end()


class ServerSpans:
    """ASGI middleware: a server span per HTTP request, named by its route once routed.

    A `traceparent` the caller sent is its parent; the span is current while the route runs, so
    what the route publishes continues the trace.
    """

    def __init__(self, app, route_of) -> None:
        self._app = app
        self._route_of = route_of

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())
                   if name in (b"traceparent", b"tracestate")}
        status = 500

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope["method"]
        with tracer().start_as_current_span(method, context=propagate.extract(carrier), kind=SpanKind.SERVER) as span:
            try:
                await self._app(scope, receive, sending)
            finally:
                route = self._route_of(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.request.method", method)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)


def _keep(event_id: UUID, context: Context) -> None:
    _CONTEXTS[event_id] = context
    _CONTEXTS.move_to_end(event_id)
    while len(_CONTEXTS) > _KEEP:
        _CONTEXTS.popitem(last=False)
