"""One trace per question across the three processes, exported over OTLP/HTTP to a collector the test runs."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.history import subscribe_and_index_history
from tests.support.receiver import Receiver
from tests.support.services import ServiceProcesses
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ACME = {"Authorization": "Bearer acme-key"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
# The intranet's own trace: the question's spans continue it.
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"

QUESTION = {
    "id": "q-traced", "thread_id": "q-traced", "author_id": "dana", "kind": "question",
    "title": "Kubernetes pod keeps getting OOMKilled and restarting",
    "body": "Our payments pod restarts with OOMKilled every few hours. Which limit do I raise?",
    "tags": ["kubernetes"],
}


def _spans(collector: Receiver) -> list[tuple[str, str, str, str]]:
    """(service, span name, trace id, parent span id) of every span the collector received."""
    spans = []
    for request in collector.received():
        if request.path != "/v1/traces":
            continue
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource in export.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append((service, span.name, span.trace_id.hex(), span.parent_span_id.hex()))
    return spans


async def test_the_spans_of_one_question_form_one_trace_from_its_post_to_the_webhook(broker, topic_prefix, tmp_path):
    with Receiver() as collector, Receiver() as receiver:
        system = ServiceProcesses.of_test(
            broker, topic_prefix, tmp_path,
            extra_env={
                "NOTIFIER_MIN_SIMILARITY": "-1",
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url.removesuffix("/hooks"),
            },
        )
        with system:
            async with httpx.AsyncClient(timeout=30) as http:
                await subscribe_and_index_history(http, system, receiver, headers=ACME)
                asked = await http.post(
                    f"{system.url('ingest')}/v1/posts", json=QUESTION, headers={**ACME, "traceparent": TRACEPARENT}
                )
                assert asked.status_code == 202, asked.text

                async def traced():
                    names = {(service, name) for service, name, trace, _ in _spans(collector) if trace == TRACE_ID}
                    return names >= EXPECTED and names

                names = await until(traced, timeout=120, what=f"the spans of the question's trace, {EXPECTED}")

        webhooks = [r for r in receiver.acknowledged() if b'"q-traced"' in r.body]
    assert webhooks, "the question was invited"
    assert all(r.headers["traceparent"].split("-")[1] == TRACE_ID for r in webhooks), "the receiver can trace it too"
    assert ("expertmatch-ingest", "POST /v1/posts") in names
    # Every span of the trace has its parent in the trace, but the first, whose parent is the caller's.
    spans = [s for s in _spans(collector) if s[2] == TRACE_ID]
    ids = {TRACEPARENT.split("-")[2]}
    for request in collector.received():
        export = ExportTraceServiceRequest.FromString(request.body)
        ids.update(span.span_id.hex() for r in export.resource_spans for s in r.scope_spans for span in s.spans)
    assert all(parent in ids for _, _, _, parent in spans)


EXPECTED = {
    ("expertmatch-ingest", "POST /v1/posts"),
    ("expertmatch-matcher", "match question"),
    ("expertmatch-notifier", "record match"),
    ("expertmatch-notifier", "deliver invitation.created"),
}
