"""`python -m tests.bench.backfill`: a large import through the whole system, against the model's bare rate.

Real posts of the four dumps in ../shared/data (copied under new ids past their 31k, so that any
`--posts` can be asked), sent as `expertmatch import` sends them: `POST /v1/posts/batch` of 500
backfill posts, 4 requests in flight, to the services as `make run` starts them (the embedded broker,
every producer's outbox, Qdrant Edge, SQLite). Timed from the first request until the matcher's
index holds every post. Before that, in the same run, the matcher's embedding backend encodes the
same texts in one call (sorted by length, batches of `--batch-size`): the model's rate on this
machine, to which the import's compares as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx

from services.embedded.broker import BrokerSupervisor
from services.matcher.settings import MatcherSettings
from shared.stackexchange import DumpPost
from shared.topics import load_topic_specs
from tests.bench.ingest import DATA, KEY, TENANT, _posts, request_bodies
from tests.bench.pipeline import _commit, _load, _texts, bare_encode_rate
from tests.support.services import ServiceProcesses


def posts_of(count: int) -> list[DumpPost]:
    """`count` posts of the dumps, the dumps copied again under new ids once each post was used."""
    dumps = _posts(10**9)
    if not dumps:
        return []
    posts = []
    for copy in range(count // len(dumps) + 1):
        posts += dumps if copy == 0 else [
            replace(p, id=f"c{copy}-{p.id}", thread_id=f"c{copy}-{p.thread_id}") for p in dumps
        ]
    return posts[:count]


async def import_rate(
    ingest: str, matcher: str, bodies: list[bytes], posts: int, concurrency: int, *, progress: bool = False
) -> tuple[float, float]:
    """(posts/s from the first request until all are indexed, seconds until ingest had accepted all)."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=httpx.Limits(max_connections=concurrency)) as http:
        async def sender() -> None:
            while queue:
                answer = await http.post(f"{ingest}/v1/posts/batch", content=queue.pop())
                if answer.status_code != 202:
                    raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        accepted = time.perf_counter() - started
        while (indexed := (await http.get(f"{matcher}/v1/index/stats")).json()["contributions"]) < posts:
            # Once a second until the last posts: the question costs the import it times.
            await asyncio.sleep(0.02 if posts - indexed <= 64 else 1.0)
            if progress:
                print(f"{time.perf_counter() - started:6.1f} s: {indexed} posts indexed", flush=True)
        return posts / (time.perf_counter() - started), accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="posts per request, as `expertmatch import` sends")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument(
        "--batch-size", type=int, default=MatcherSettings().embed_batch_size, help="texts per batch of the bare encode"
    )
    parser.add_argument("--progress", action="store_true", help="print how many posts are indexed, every second")
    args = parser.parse_args(argv)
    posts = posts_of(args.posts)
    if not posts:
        print(f"skipped: no dumps in {DATA} (the Stack Exchange data lives in ../shared/data)")
        return 0
    load_before = _load()
    encode = bare_encode_rate(_texts(posts), args.batch_size)
    print(f"bare encode of {len(posts)} posts: {encode:.1f} posts/s", flush=True)
    bodies = request_bodies(posts, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"bench{uuid.uuid4().hex[:6]}-"
        epoch_file = Path(tmp) / "broker-epoch"
        with BrokerSupervisor(epoch_file=epoch_file, topics=load_topic_specs(prefix=prefix)) as broker:
            system = ServiceProcesses(
                bootstrap_servers=broker.bootstrap_servers, data_dir=Path(tmp) / "data", api_keys=f"{KEY}:{TENANT}",
                topic_prefix=prefix, extra_env={"KAFKA_EPOCH_FILE": str(epoch_file)},
            )
            with system:
                rate, accepted = asyncio.run(import_rate(
                    system.url("ingest"), system.url("matcher"), bodies, len(posts), args.concurrency,
                    progress=args.progress,
                ))
                rss = system.rss_bytes("matcher")
    print(f"| import of {len(posts)} real posts (batches of {args.batch}, {args.concurrency} in flight) | value |")
    print("|---|---|")
    print(f"| machine | {os.cpu_count()} cores; load average (1/5/15 min) {load_before} before, {_load()} after |")
    print(f"| commit | {_commit()} |")
    print(f"| bare batched encode (the matcher's backend, batch {args.batch_size}, one call) | {encode:.1f} posts/s |")
    print(f"| accepted by ingest | {len(posts) / accepted:.0f} posts/s ({accepted:.1f} s) |")
    print(f"| indexed by the matcher, first request -> last post indexed | {rate:.1f} posts/s |")
    print(f"| ratio import / bare encode | {rate / encode:.2f} |")
    print(f"| RSS of the matcher after | {rss / 2**20:.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
