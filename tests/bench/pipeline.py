"""`make bench`: the model's bare encode rate, the matcher's rate through Kafka, post-to-webhook latency
(one at a time and at a sustained rate, each with where its time went), that latency again while a
large import is being indexed, and the services' memory.

All on the same real posts from ../shared/data, in one run, so the figures compare as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from services.matcher.embedder import build_embedder
from services.matcher.settings import MatcherSettings
from services.matcher.texts import contribution_text
from shared.embedded_broker import EmbeddedBroker
from shared.events import Post, PostKind, PostUpserted
from shared.kafka import ensure_topics, make_producer, publish
from shared.settings import CommonSettings
from shared.stackexchange import DumpPost, read_dump
from shared.text import to_plain_text
from shared.topics import BACKFILL
from tests.bench.spans import SpanCollector, breakdown, pct, stages
from tests.support.receiver import Receiver
from tests.support.services import ServiceProcesses

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TENANT, KEY = "bench", "bench-key"


def _titles(posts: list[DumpPost]) -> dict[str, str | None]:
    return {p.thread_id: p.title for p in posts if p.kind == "question"}


def _texts(posts: list[DumpPost]) -> list[str]:
    titles = _titles(posts)
    return [contribution_text(titles.get(p.thread_id), to_plain_text(p.body)) for p in posts]


def _event(post: DumpPost, *, backfill: bool) -> PostUpserted:
    return PostUpserted(
        tenant=TENANT,
        data=Post(
            id=post.id, tenant=TENANT, thread_id=post.thread_id, author_id=post.author_id,
            kind=PostKind(post.kind), title=post.title, body=to_plain_text(post.body) or "(empty)",
            tags=post.tags, created_at=post.created_at, accepted=post.accepted, score=post.score,
            backfill=backfill,
        ),
    )


def bare_encode_rate(texts: list[str], batch_size: int) -> float:
    # The backend the matcher runs (MATCHER_EMBEDDER, else its default), so the ratio compares like with like.
    settings = MatcherSettings()
    embedder = build_embedder(settings.embedder, batch_size=batch_size, model_dir=settings.model_path)
    embedder.load()
    asyncio.run(embedder.embed(texts[:64]))  # warm up
    started = time.perf_counter()
    asyncio.run(embedder.embed(texts))
    elapsed = time.perf_counter() - started
    embedder.close()
    return len(texts) / elapsed


async def matcher_rate(settings: CommonSettings, matcher_url: str, posts: list[DumpPost]) -> float:
    producer = make_producer(settings)
    await producer.start()
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        started = time.perf_counter()
        await publish(producer, settings.topic(BACKFILL), [_event(p, backfill=True) for p in posts])
        await producer.stop()
        while (indexed := (await http.get(f"{matcher_url}/v1/index/stats")).json()["contributions"]) < len(posts):
            # Rarely until the last posts: asked 20 times a second throughout, the question took
            # 5% of a core from the import it times (the bench's and the matcher's CPU).
            await asyncio.sleep(0.02 if len(posts) - indexed <= 64 else 0.25)
        return len(posts) / (time.perf_counter() - started)


async def first_model(matcher_url: str, timeout: float = 600.0) -> tuple[int, float]:
    """Wait for the tenant's first learned model, fit once the import is in; (examples, seconds waited).

    Its fit reads every past question's candidates off the index: timed questions would otherwise
    share the cores with that one-off, as they do not in a running system. (0, seconds): none came.
    """
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        while time.perf_counter() - started < timeout:
            learned = (await http.get(f"{matcher_url}/v1/index/stats")).json()["learned_from"]
            if learned:
                return learned, time.perf_counter() - started
            await asyncio.sleep(0.25)
    return 0, time.perf_counter() - started


async def subscribe(system: ServiceProcesses, receiver: Receiver) -> None:
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        created = await http.post(f"{system.url('notifier')}/v1/subscriptions", json={"url": receiver.url})
        created.raise_for_status()


@dataclass
class Timed:
    """The questions of one phase: each one's POST -> first webhook, and where its time went."""

    latencies: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    untraced: int = 0  # questions whose spans did not all arrive

    def row(self, q: float) -> float:
        return pct(self.latencies, q) * 1000


class Arrivals:
    """The first webhook of each thread at the receiver, read as they come."""

    def __init__(self, receiver: Receiver) -> None:
        self._receiver = receiver
        self._read = 0
        self.first: dict[str, float] = {}

    def update(self) -> None:
        received = self._receiver.received()
        for request in received[self._read:]:
            self.first.setdefault(_thread(request), request.at)
        self._read = len(received)

    async def wait(self, thread_ids: Sequence[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.update()
            missing = [t for t in thread_ids if t not in self.first]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no webhook for {len(missing)} questions (e.g. {missing[0]}) in {timeout:.0f} s")
            # The receiver stamps each arrival itself: looking less often costs the figures nothing.
            await asyncio.sleep(0.01)


async def _post_question(
    http: httpx.AsyncClient, ingest: str, question: DumpPost, thread_id: str
) -> tuple[float, bytes]:
    """POST one question under a trace of its own; returns when it was sent and its trace id."""
    body = _event(question, backfill=False).data.model_dump(mode="json", exclude={"tenant"})
    body["id"] = body["thread_id"] = thread_id
    trace_id = os.urandom(16)
    traceparent = f"00-{trace_id.hex()}-{os.urandom(8).hex()}-01"
    started = time.time()
    answer = await http.post(f"{ingest}/v1/posts", json=body, headers={"traceparent": traceparent})
    answer.raise_for_status()
    return started, trace_id


async def _collect(
    timed: Timed, collector: SpanCollector, arrivals: Arrivals, sent: dict[str, tuple[float, bytes]]
) -> Timed:
    """Latencies from the arrivals; stages once every question's spans are in (the services export twice a second)."""
    for thread_id, (started, _) in sent.items():
        timed.latencies.append(arrivals.first[thread_id] - started)
    deadline = time.monotonic() + 10
    pending = dict(sent)
    while pending and time.monotonic() < deadline:
        for thread_id, (started, trace_id) in list(pending.items()):
            found = stages(collector.spans_of(trace_id), arrivals.first[thread_id])
            if found is not None:
                found_total = arrivals.first[thread_id] - started
                timed.stages.append({**found, "total": found_total})
                del pending[thread_id]
        await asyncio.sleep(0.2)
    timed.untraced = len(pending)
    return timed


async def one_at_a_time(
    system: ServiceProcesses, arrivals: Arrivals, collector: SpanCollector, questions: list[DumpPost], tag: str,
    gap: float = 0.0,
) -> Timed:
    """Each question posted once the one before has its webhook (and `gap` s more)."""
    sent: dict[str, tuple[float, bytes]] = {}
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for question in questions:
            await asyncio.sleep(gap)
            thread_id = f"{tag}-{question.id}"
            sent[thread_id] = await _post_question(http, system.url("ingest"), question, thread_id)
            await arrivals.wait([thread_id])
    return await _collect(Timed(), collector, arrivals, sent)


async def sustained(
    system: ServiceProcesses, arrivals: Arrivals, collector: SpanCollector, questions: list[DumpPost],
    rate: float, seconds: float,
) -> Timed:
    """Questions posted at `rate` per second for `seconds`, on a fixed schedule whatever the answers take."""
    count = int(rate * seconds)
    sent: dict[str, tuple[float, bytes]] = {}
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        async def post(n: int, question: DumpPost) -> None:
            thread_id = f"load{n}-{question.id}"
            sent[thread_id] = await _post_question(http, system.url("ingest"), question, thread_id)

        begun = time.monotonic()
        posting = []
        for n in range(count):
            await asyncio.sleep(max(0.0, begun + n / rate - time.monotonic()))
            posting.append(asyncio.create_task(post(n, questions[n % len(questions)])))
        await asyncio.gather(*posting)
    await arrivals.wait(list(sent))
    return await _collect(Timed(), collector, arrivals, sent)


def breakdown_rows(timed: Timed) -> list[tuple[str, float, float]]:
    return breakdown([{k: v for k, v in q.items() if k != "total"} for q in timed.stages],
                     [q["total"] for q in timed.stages])


async def latency_during_backfill(
    settings: CommonSettings, system: ServiceProcesses, arrivals: Arrivals, collector: SpanCollector,
    backfill: list[DumpPost], questions: list[DumpPost], gap: float,
) -> tuple[Timed, int]:
    """Question latency while `backfill` waits in the import lane; returns it and how many were indexed meanwhile."""
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {KEY}"}) as http:
        async def indexed() -> int:
            return (await http.get(f"{system.url('matcher')}/v1/index/stats")).json()["contributions"]

        before = await indexed()
        producer = make_producer(settings)
        await producer.start()
        await publish(producer, settings.topic(BACKFILL), [_event(p, backfill=True) for p in backfill])
        await producer.stop()
        # Apart, as questions come: in each gap the import lane takes its turn, so a question
        # arrives while a backfill batch is being embedded.
        timed = await one_at_a_time(system, arrivals, collector, questions, "live", gap)
        return timed, await indexed() - before


def _import_posts(dumps: list[list[DumpPost]], count: int) -> list[DumpPost]:
    """`count` posts from the dumps, renamed so that none collides with the history or another dump."""
    posts = []
    for n, dump in enumerate(dumps):
        posts += [replace(p, id=f"import{n}-{p.id}", thread_id=f"import{n}-{p.thread_id}") for p in dump]
    return posts[:count]


def _thread(request) -> str:
    return json.loads(request.body)["data"]["thread_id"]


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=False).stdout
    return done.stdout.strip() + ("+changes" if dirty.strip() else "")


def _load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="se-quantumcomputing")
    parser.add_argument("--posts", type=int, default=1000, help="history posts to index")
    parser.add_argument("--questions", type=int, default=60, help="questions timed end to end, one at a time")
    parser.add_argument("--batch-size", type=int, default=MatcherSettings().embed_batch_size)
    parser.add_argument("--rate", type=float, default=5.0, help="questions per second in the sustained phase")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained phase (0: skip it)")
    parser.add_argument(
        "--import-posts", type=int, default=20_000, help="backfill waiting while live questions are timed"
    )
    parser.add_argument("--live-questions", type=int, default=20, help="questions timed during the import")
    parser.add_argument("--live-gap", type=float, default=3.0, help="seconds between questions during the import")
    args = parser.parse_args(argv)

    path = DATA / args.dataset / "Posts.xml.gz"
    if not path.exists():
        print(f"skipped: {path} is absent (the Stack Exchange data lives in ../shared/data)")
        return 0
    load_before = _load()
    dump = read_dump(path).posts
    history = dump[: args.posts]
    questions = [p for p in dump[args.posts:] if p.kind == "question"]
    live_questions = questions[args.questions: args.questions + args.live_questions]
    load_questions = questions[args.questions + args.live_questions:] or questions
    questions = questions[: args.questions]
    dumps = [read_dump(other).posts for other in sorted(DATA.glob("*/Posts.xml.gz"))]
    imported = _import_posts(dumps, args.import_posts)
    print(f"dataset {args.dataset}: {len(history)} history posts, {len(questions)} questions", flush=True)

    encode = bare_encode_rate(_texts(history), args.batch_size)
    print(f"bare encode: {encode:.1f} posts/s", flush=True)

    rss: dict[str, int] = {}
    loaded = None
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker, SpanCollector() as collector:
        prefix = f"bench{uuid.uuid4().hex[:6]}-"
        settings = CommonSettings(kafka_bootstrap_servers=broker.bootstrap_servers, kafka_topic_prefix=prefix)
        asyncio.run(ensure_topics(settings))
        system = ServiceProcesses(
            bootstrap_servers=broker.bootstrap_servers, data_dir=Path(tmp), api_keys=f"{KEY}:{TENANT}",
            topic_prefix=prefix,
            extra_env={
                "MATCHER_EMBED_BATCH_SIZE": str(args.batch_size),
                # Latency is measured here, not the invite policy: the few most active people of a
                # site would reach their daily cap within the first questions and get nothing more,
                # and a question nobody is close enough to would send no webhook to time.
                "NOTIFIER_MAX_INVITES_PER_DAY": "100000",
                "NOTIFIER_MAX_INVITES_PER_WEEK": "100000",
                "NOTIFIER_MIN_SIMILARITY": "-1",
                # Each service's spans come here: the stages of every question are read off them.
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            },
        )
        with system, Receiver() as receiver:
            arrivals = Arrivals(receiver)
            asyncio.run(subscribe(system, receiver))
            through_kafka = asyncio.run(matcher_rate(settings, system.url("matcher"), history))
            print(f"matcher through Kafka: {through_kafka:.1f} posts/s", flush=True)
            learned, fitting = asyncio.run(first_model(system.url("matcher")))
            print(f"first model: {learned} examples, {fitting:.1f} s after the posts were indexed", flush=True)
            single = asyncio.run(one_at_a_time(system, arrivals, collector, questions, "bench"))
            print(f"POST -> webhook, one at a time: p50 {single.row(50):.0f} ms", flush=True)
            if args.seconds > 0:
                loaded = asyncio.run(sustained(system, arrivals, collector, load_questions, args.rate, args.seconds))
                print(f"POST -> webhook at {args.rate:g}/s: p50 {loaded.row(50):.0f} ms", flush=True)
            during, indexed = asyncio.run(latency_during_backfill(
                settings, system, arrivals, collector, imported, live_questions, args.live_gap
            ))
            rss = {name: system.rss_bytes(name) for name in ("ingest", "matcher", "notifier")}

    print()
    print(f"| measure ({args.dataset}, {len(history)} posts, {len(questions)} questions) | value |")
    print("|---|---|")
    print(f"| machine | {os.cpu_count()} cores; load average (1/5/15 min) {load_before} before, {_load()} after |")
    print(f"| commit | {_commit()} |")
    print(f"| bare batched encode ({MatcherSettings().embedder}, batch {args.batch_size}) | {encode:.1f} posts/s |")
    print(f"| matcher through Kafka (publish -> indexed) | {through_kafka:.1f} posts/s |")
    print(f"| ratio matcher / bare encode | {through_kafka / encode:.2f} |")
    print(f"| the tenant's first ranking model: examples, fit done after the posts were indexed "
          f"| {learned}, {fitting:.1f} s{'' if learned else ' (none: timed with the fusion)'} |")
    _latency_rows("one at a time", single)
    if loaded is not None:
        _latency_rows(f"{args.rate:g} questions/s for {args.seconds:g} s", loaded)
    print(f"| POST -> webhook, {len(during.latencies)} questions {args.live_gap:g} s apart while {len(imported)} "
          f"imported posts are indexed, p50 / p95 | {during.row(50):.0f} / {during.row(95):.0f} ms |")
    print(f"| imported posts indexed meanwhile (of {len(imported)}) | {indexed} |")
    for name, value in rss.items():
        print(f"| RSS of {name} after these phases | {value / 2**20:.0f} MB |")
    return 0


def _latency_rows(phase: str, timed: Timed) -> None:
    print(f"| POST -> webhook, {phase} ({len(timed.latencies)} questions), p50 / p95 / max "
          f"| {timed.row(50):.0f} / {timed.row(95):.0f} / {max(timed.latencies) * 1000:.0f} ms |")
    for stage, p50, p95 in breakdown_rows(timed):
        print(f"| &nbsp; {stage}, p50 / p95 | {p50:.1f} / {p95:.1f} ms |")
    if timed.untraced:
        print(f"| &nbsp; questions without every span (left out of the stages) | {timed.untraced} |")


if __name__ == "__main__":
    sys.exit(main())
