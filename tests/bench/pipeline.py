"""`make bench`: the model's bare encode rate, the matcher's rate through Kafka, post-to-webhook latency,
and that latency again while a large import is being indexed.

All on the same real posts from ../shared/data, in one run, so the figures compare as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx

from services.matcher.embedder import SentenceEmbedder
from services.matcher.texts import contribution_text
from shared.embedded_broker import EmbeddedBroker
from shared.events import Post, PostKind, PostUpserted
from shared.kafka import ensure_topics, make_producer, publish
from shared.settings import CommonSettings
from shared.stackexchange import DumpPost, read_dump
from shared.text import to_plain_text
from shared.topics import BACKFILL
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
    embedder = SentenceEmbedder(batch_size=batch_size)
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
        while (await http.get(f"{matcher_url}/v1/index/stats")).json()["contributions"] < len(posts):
            await asyncio.sleep(0.05)
        return len(posts) / (time.perf_counter() - started)


async def subscribe(system: ServiceProcesses, receiver: Receiver) -> None:
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        created = await http.post(f"{system.url('notifier')}/v1/subscriptions", json={"url": receiver.url})
        created.raise_for_status()


async def webhook_latency(
    system: ServiceProcesses, receiver: Receiver, questions: list[DumpPost], tag: str, gap: float = 0.0
) -> list[float]:
    """Seconds from POST /v1/posts of a question to its first webhook at a real receiver, `gap` s apart."""
    latencies = []
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for question in questions:
            await asyncio.sleep(gap)
            body = _event(question, backfill=False).data.model_dump(mode="json", exclude={"tenant"})
            body["id"] = body["thread_id"] = f"{tag}-{question.id}"
            seen = len(receiver.received())
            started = time.time()
            answer = await http.post(f"{system.url('ingest')}/v1/posts", json=body)
            answer.raise_for_status()
            deadline = time.monotonic() + 60
            while not _arrived(receiver, seen, body["thread_id"]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no webhook for {body['thread_id']} in 60 s")
                await asyncio.sleep(0.002)
            arrived = min(r.at for r in receiver.received()[seen:] if _thread(r) == body["thread_id"])
            latencies.append(arrived - started)
    return latencies


async def latency_during_backfill(
    settings: CommonSettings, system: ServiceProcesses, receiver: Receiver, backfill: list[DumpPost],
    questions: list[DumpPost], gap: float,
) -> tuple[list[float], int]:
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
        latencies = await webhook_latency(system, receiver, questions, "live", gap)
        return latencies, await indexed() - before


def _import_posts(dumps: list[list[DumpPost]], count: int) -> list[DumpPost]:
    """`count` posts from the dumps, renamed so that none collides with the history or another dump."""
    posts = []
    for n, dump in enumerate(dumps):
        posts += [replace(p, id=f"import{n}-{p.id}", thread_id=f"import{n}-{p.thread_id}") for p in dump]
    return posts[:count]


def _thread(request) -> str:
    return json.loads(request.body)["data"]["thread_id"]


def _arrived(receiver: Receiver, seen: int, thread_id: str) -> bool:
    return any(_thread(r) == thread_id for r in receiver.received()[seen:])


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="se-quantumcomputing")
    parser.add_argument("--posts", type=int, default=1000, help="history posts to index")
    parser.add_argument("--questions", type=int, default=60, help="questions timed end to end")
    parser.add_argument("--batch-size", type=int, default=32)
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
    dump = read_dump(path).posts
    history = dump[: args.posts]
    questions = [p for p in dump[args.posts:] if p.kind == "question"]
    live_questions = questions[args.questions: args.questions + args.live_questions]
    questions = questions[: args.questions]
    dumps = [read_dump(other).posts for other in sorted(DATA.glob("*/Posts.xml.gz"))]
    imported = _import_posts(dumps, args.import_posts)
    print(f"dataset {args.dataset}: {len(history)} history posts, {len(questions)} questions", flush=True)

    encode = bare_encode_rate(_texts(history), args.batch_size)
    print(f"bare encode: {encode:.1f} posts/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
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
            },
        )
        with system, Receiver() as receiver:
            asyncio.run(subscribe(system, receiver))
            through_kafka = asyncio.run(matcher_rate(settings, system.url("matcher"), history))
            print(f"matcher through Kafka: {through_kafka:.1f} posts/s", flush=True)
            latencies = asyncio.run(webhook_latency(system, receiver, questions, "bench"))
            print(f"POST -> webhook p50 {_pct(latencies, 50) * 1000:.0f} ms", flush=True)
            during, indexed = asyncio.run(latency_during_backfill(
                settings, system, receiver, imported, live_questions, args.live_gap
            ))

    print()
    print(f"| measure ({args.dataset}, {len(history)} posts, {len(questions)} questions) | value |")
    print("|---|---|")
    print(f"| bare batched encode (batch {args.batch_size}) | {encode:.1f} posts/s |")
    print(f"| matcher through Kafka (publish -> indexed) | {through_kafka:.1f} posts/s |")
    print(f"| ratio matcher / bare encode | {through_kafka / encode:.2f} |")
    print(f"| POST question -> webhook p50 | {_pct(latencies, 50) * 1000:.0f} ms |")
    print(f"| POST question -> webhook p95 | {_pct(latencies, 95) * 1000:.0f} ms |")
    print(f"| POST question -> webhook max | {max(latencies) * 1000:.0f} ms |")
    print(f"| same, {len(during)} questions {args.live_gap:g} s apart while {len(imported)} imported posts "
          f"are indexed, p50 | {_pct(during, 50) * 1000:.0f} ms |")
    print(f"| same, while importing, p95 | {_pct(during, 95) * 1000:.0f} ms |")
    print(f"| imported posts indexed meanwhile (of {len(imported)}) | {indexed} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
