"""`python -m tests.bench.ingest`: posts per second one ingest process accepts through `POST /v1/posts/batch`.

Real posts of the dumps in ../shared/data, sent in batches by a client that keeps a few requests in
flight, to an ingest process started as `expertmatch ingest` runs it. Measured twice in one run:
behind the embedded default's outbox (a 202 means written to ingest's outbox and acknowledged by
the broker) and straight to the broker (Apache Kafka's case, whose log is durable), so the two
compare as a ratio. The process's memory is read after each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
from pydantic import ValidationError

from services.embedded.broker import BrokerSupervisor
from services.ingest.schemas import PostIn
from shared.stackexchange import DumpPost, read_dump
from shared.topics import load_topic_specs
from tests.support.services import ServiceProcesses

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TENANT, KEY = "bench", "bench-key"


def _body(post: DumpPost) -> dict:
    """A post as an intranet's import sends it: HTML body, backfill flag."""
    body = {
        "id": post.id, "thread_id": post.thread_id, "author_id": post.author_id, "kind": post.kind,
        "body": post.body, "tags": list(post.tags), "created_at": post.created_at.isoformat(),
        "accepted": post.accepted, "score": post.score, "backfill": True,
    }
    if post.title:
        body["title"] = post.title
    return body


def request_bodies(posts: list[DumpPost], batch: int) -> list[bytes]:
    """Encoded once, before the clock starts: the client's JSON encoding is not ingest's time."""
    return [
        json.dumps({"posts": [_body(p) for p in posts[i:i + batch]]}).encode()
        for i in range(0, len(posts), batch)
    ]


async def accept_rate(url: str, warm_up: bytes, bodies: list[bytes], posts: int, concurrency: int) -> float:
    """Posts accepted per second, `concurrency` requests in flight."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as http:
        async def sender() -> None:
            while queue:
                answer = await http.post(f"{url}/v1/posts/batch", content=queue.pop())
                if answer.status_code != 202:
                    raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text[:300]}")

        # One batch first: connections open and the producer has its metadata before the clock starts.
        (await http.post(f"{url}/v1/posts/batch", content=warm_up)).raise_for_status()
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return posts / (time.perf_counter() - started)


def _posts(count: int) -> list[DumpPost]:
    """Posts of the dumps that the API accepts (some dump posts have no text), renamed apart per dump."""
    posts = []
    for n, dump in enumerate(sorted(DATA.glob("*/Posts.xml.gz"))):
        for post in read_dump(dump).posts:
            post = replace(post, id=f"d{n}-{post.id}", thread_id=f"d{n}-{post.thread_id}")
            try:
                PostIn.model_validate(_body(post))
            except ValidationError:
                continue
            posts.append(post)
            if len(posts) == count:
                return posts
    return posts


def measure(
    tmp: Path, warm_up: bytes, bodies: list[bytes], posts: int, concurrency: int, *, outbox: bool
) -> tuple[float, int]:
    """(posts/s, RSS bytes after) of one ingest process, with or without the outbox."""
    prefix = f"bench{uuid.uuid4().hex[:6]}-"
    epoch_file = tmp / f"epoch-{prefix}"
    with BrokerSupervisor(epoch_file=epoch_file, topics=load_topic_specs(prefix=prefix)) as broker:
        system = ServiceProcesses(
            bootstrap_servers=broker.bootstrap_servers, data_dir=tmp / prefix, api_keys=f"{KEY}:{TENANT}",
            topic_prefix=prefix, services=("ingest",),
            extra_env={"KAFKA_EPOCH_FILE": str(epoch_file)} if outbox else {},
        )
        with system:
            rate = asyncio.run(accept_rate(system.url("ingest"), warm_up, bodies, posts, concurrency))
            return rate, system.rss_bytes("ingest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="posts per request")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    args = parser.parse_args(argv)
    posts = _posts(args.posts + args.batch)
    if len(posts) <= args.batch:
        print("skipped: not enough posts in ../shared/data")
        return 0
    [warm_up], timed = request_bodies(posts[:args.batch], args.batch), posts[args.batch:]
    bodies, counted = request_bodies(timed, args.batch), len(timed)
    with tempfile.TemporaryDirectory() as tmp:
        durable, durable_rss = measure(Path(tmp), warm_up, bodies, counted, args.concurrency, outbox=True)
        direct, direct_rss = measure(Path(tmp), warm_up, bodies, counted, args.concurrency, outbox=False)
    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"| ingest: {counted} real posts in batches of {args.batch}, {args.concurrency} requests in flight "
          f"| value |")
    print("|---|---|")
    print(f"| machine | {os.cpu_count()} cores; load average (1/5/15 min) after: {load} |")
    print(f"| accepted through the outbox (embedded default) | {durable:.0f} posts/s |")
    print(f"| accepted straight to the broker (as with Apache Kafka) | {direct:.0f} posts/s |")
    print(f"| RSS of ingest after, outbox / straight | {durable_rss / 2**20:.0f} / {direct_rss / 2**20:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
