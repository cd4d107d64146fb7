"""`python -m tests.bench.notifier`: the notifier's share of question -> webhook latency, alone.

The real notifier app on a real embedded broker and database, webhooks to a real receiver. Matches
are published one at a time (each waits for its webhooks), then at a sustained rate on a fixed
schedule. Printed per phase: publish -> first webhook and commit -> first webhook (p50/p95), the
notifier's stages read off its spans as `make bench` reads them, and the database commits that
wrote something (each one an fsync on SQLite) and the consumer's offset commits, per match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy.orm import Session

from services.embedded.broker import BrokerSupervisor
from services.notifier.app import create_app
from services.notifier.models import Invitation
from services.notifier.settings import NotifierSettings
from shared import tracing
from shared.kafka import make_producer, publish
from shared.topics import MATCHES, load_topic_specs
from tests.bench.spans import pct
from tests.support.commits import WriteCommits
from tests.support.events import matched
from tests.support.receiver import Receiver

KEY = {"authorization": "Bearer acme-key"}
STAGES = ("poll wait", "record", "delivery wait", "webhook POST -> receiver")


class _Kept(SpanExporter):
    """Every finished span, by trace id."""

    def __init__(self) -> None:
        self.by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)

    def export(self, spans) -> SpanExportResult:
        for span in spans:
            self.by_trace[span.context.trace_id].append(span)
            for link in span.links:
                self.by_trace[link.context.trace_id].append(span)
        return SpanExportResult.SUCCESS


class _Commits:
    """When each thread's invitations were committed."""

    def __init__(self) -> None:
        self.committed_at: dict[str, float] = {}
        sa.event.listen(Session, "after_flush", self._flushed)
        sa.event.listen(Session, "after_commit", self._session_committed)

    def _flushed(self, session: Session, _context) -> None:
        threads = session.info.setdefault("threads", set())
        threads.update(thing.thread_id for thing in session.new if isinstance(thing, Invitation))

    def _session_committed(self, session: Session) -> None:
        now = time.time()
        for thread in session.info.pop("threads", ()):
            self.committed_at.setdefault(thread, now)


@dataclass
class _Phase:
    name: str
    published_at: dict[str, float] = field(default_factory=dict)
    trace_of: dict[str, int] = field(default_factory=dict)
    first_webhook: dict[str, float] = field(default_factory=dict)
    writes: int = 0
    offset_commits: int = 0


def _first_webhooks(receiver: Receiver) -> dict[str, float]:
    first: dict[str, float] = {}
    for request in receiver.received():
        thread = json.loads(request.body)["data"]["thread_id"]
        first[thread] = min(first.get(thread, request.at), request.at)
    return first


def _stages(spans: list[ReadableSpan], published: float, arrived: float) -> dict[str, float] | None:
    def first(name: str) -> ReadableSpan | None:
        found = [s for s in spans if s.name == name]
        return min(found, key=lambda s: s.start_time) if found else None

    taken, record, deliver = first("handle notifier"), first("record match"), first("deliver invitation.created")
    if taken is None or record is None or deliver is None:
        return None
    edges = ((published, taken.start_time / 1e9), (record.start_time / 1e9, record.end_time / 1e9),
             (record.end_time / 1e9, deliver.start_time / 1e9), (deliver.start_time / 1e9, arrived))
    return {stage: end - start for stage, (start, end) in zip(STAGES, edges, strict=True)}


class _Bench:
    """One notifier, its receiver and a producer of matches; `measure` runs one phase."""

    def __init__(self, args: argparse.Namespace, notifier, producer, topic: str, receiver: Receiver) -> None:
        self.args, self.notifier, self.producer, self.topic, self.receiver = args, notifier, producer, topic, receiver
        self.writes = WriteCommits(notifier.db.engine)
        self.commits = _Commits()
        self.people = [f"p{n}" for n in range(args.people)]
        self.serial = 0

    async def send(self, phase: _Phase, count: int = 1) -> None:
        """`count` matches in one publish, as the matcher publishes a batch's; each is a trace of its own."""
        events = []
        for _ in range(count):
            self.serial += 1
            thread = f"{phase.name}-{self.serial}"
            picked = [self.people[(self.serial * 7 + k) % len(self.people)] for k in range(self.args.candidates)]
            event = matched(*picked, thread=thread)
            with trace.get_tracer("bench").start_as_current_span("publish") as span:
                phase.trace_of[thread] = span.get_span_context().trace_id
                tracing.remember(event.id)
            events.append((thread, event))
        for thread, _ in events:
            phase.published_at[thread] = time.time()
        await publish(self.producer, self.topic, [event for _, event in events])

    async def settle(self, phase: _Phase, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while set(phase.published_at) - set(_first_webhooks(self.receiver)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{phase.name}: webhooks missing after {timeout:.0f}s")
            await asyncio.sleep(0.005)

    async def one_at_a_time(self, phase: _Phase, count: int) -> None:
        for _ in range(count):
            await self.send(phase)
            await self.settle(phase)

    async def sustained(self, phase: _Phase, rate: float, seconds: float, burst: int) -> None:
        begun = time.monotonic()
        for n in range(int(rate * seconds / burst)):
            await asyncio.sleep(max(0.0, begun + n * burst / rate - time.monotonic()))
            await self.send(phase, burst)

    async def measure(self, phase: _Phase, work) -> _Phase:
        writes, batches = self.writes.count, self.notifier.matches_loop.stats.batches
        await work
        await self.settle(phase)
        phase.first_webhook = {t: at for t, at in _first_webhooks(self.receiver).items() if t in phase.published_at}
        phase.writes = self.writes.count - writes
        phase.offset_commits = self.notifier.matches_loop.stats.batches - batches
        return phase


async def _run(args: argparse.Namespace, folder: Path) -> None:
    kept = _Kept()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    trace.set_tracer_provider(provider)
    prefix = f"b{uuid.uuid4().hex[:8]}-"
    with (
        BrokerSupervisor(epoch_file=folder / "epoch", topics=load_topic_specs(prefix=prefix),
                         log_path=folder / "broker.log") as broker,
        Receiver() as receiver,
    ):
        settings = NotifierSettings(
            api_keys="acme-key:acme", kafka_bootstrap_servers=broker.bootstrap_servers, kafka_topic_prefix=prefix,
            data_dir=folder / "data", allowed_hosts="127.0.0.0/8,::1", max_invites_per_day=100_000,
            max_invites_per_week=100_000, min_similarity=-1,
            **({"matches_per_transaction": args.per_transaction} if args.per_transaction else {}),
            **({"database_url": args.database_url} if args.database_url else {}),
        )
        app = create_app(settings)
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60) as manager:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://n") as api:
                for _ in range(args.subscriptions):
                    await api.post("/v1/subscriptions", json={"url": receiver.url}, headers=KEY)
            producer = make_producer(settings)
            await producer.start()
            try:
                bench = _Bench(args, app.state.notifier, producer, settings.topic(MATCHES), receiver)
                warm = _Phase("warm")
                await bench.measure(warm, bench.one_at_a_time(warm, 3))
                one = _Phase("one at a time")
                await bench.measure(one, bench.one_at_a_time(one, args.one))
                loaded = _Phase(f"{args.rate:g}/s for {args.seconds:g} s, {args.burst} per publish")
                await bench.measure(loaded, bench.sustained(loaded, args.rate, args.seconds, args.burst))
            finally:
                await producer.stop()
            await asyncio.sleep(0.5)  # the last delivery spans end just after the receiver answered
            for phase in (one, loaded):
                _report(phase, bench.commits, kept)


def _ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:6.0f} ms   p95 {pct(values, 95) * 1000:6.0f} ms"


def _report(phase: _Phase, commits: _Commits, kept: _Kept) -> None:
    threads = sorted(phase.published_at)
    total = {t: phase.first_webhook[t] - phase.published_at[t] for t in threads}
    timed = {
        t: found for t in threads
        if (found := _stages(kept.by_trace.get(phase.trace_of[t], []), phase.published_at[t], phase.first_webhook[t]))
    }
    n = len(threads)
    print(f"\n## {phase.name}: {n} matches, {len(timed)} with every span")
    print(f"publish -> first webhook     {_ms(list(total.values()))}")
    committed = [phase.first_webhook[t] - commits.committed_at[t] for t in threads if t in commits.committed_at]
    print(f"commit  -> first webhook     {_ms(committed)}")
    for stage in STAGES:
        print(f"  {stage:26s} {_ms([found[stage] for found in timed.values()])}")
    # Between the stages: the publish's acknowledgement, opening the batch's transaction.
    print(f"  {'the rest':26s} {_ms([total[t] - sum(found.values()) for t, found in timed.items()])}")
    print(f"database commits that wrote: {phase.writes} ({phase.writes / n:.2f} per match); "
          f"consumer offset commits: {phase.offset_commits} ({phase.offset_commits / n:.2f} per match)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", type=int, default=30, help="matches published one at a time")
    parser.add_argument("--rate", type=float, default=5.0, help="matches per second in the sustained phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=1,
                        help="matches per publish in the sustained phase (the matcher publishes a batch's together)")
    parser.add_argument("--candidates", type=int, default=10, help="candidates per match (the matcher's default)")
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=1)
    parser.add_argument("--per-transaction", type=int, help="NOTIFIER_MATCHES_PER_TRANSACTION (default: its default)")
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-notifier-") as folder:
        asyncio.run(_run(args, Path(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
