"""`make bench-scale`: the matcher's index at 10k / 100k / 1M contributions of the real dumps, on Qdrant Edge.

The ~31k posts of ../shared/data are embedded once (cached under .expertmatch/bench), then copied
into one large tenant (40% of the points) and 30 small ones, each copy with its own post, thread
and person ids and its vectors nudged a little (so no two points tie). The points are written
through the matcher's own adapter (EdgeIndex). A second process then serves that index as the
matcher does (its app and lifespan, the model loaded) and times the rank step of questions,
the search route, recall of the dense search against exact search, and its own RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from services.evaluation.cache import CachedEmbedder, EmbeddingCache
from services.evaluation.replay import as_post
from services.matcher.embedder import build_embedder
from services.matcher.index.base import Contribution
from services.matcher.index.lexical import document_terms
from services.matcher.settings import MatcherSettings
from services.matcher.texts import contribution_text
from shared.events import PostKind
from shared.stackexchange import read_dump

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
WORK = Path(".expertmatch/bench")
LARGE, SMALL = "large", "t00"
SMALL_TENANTS = 30
LARGE_SHARE = 0.4
# Every copy but the first moves each vector by noise of this norm (cosine to the original ~0.99).
NUDGE = 0.15
# The dumps are shifted so their newest post is a day before the questions are asked.
NOW = datetime(2026, 12, 1, tzinfo=UTC)
BATCH = 2_000


@dataclass(frozen=True, slots=True)
class BasePost:
    """One real post, as every copy of it is indexed (ids are prefixed per copy)."""

    site: str
    id: str
    thread_id: str
    author_id: str
    kind: PostKind
    title: str | None
    text: str
    tags: tuple[str, ...]
    created_at: datetime
    accepted: bool
    score: int
    sparse: dict[int, float]


def load_corpus(data: Path, cache_path: Path) -> tuple[list[BasePost], np.ndarray]:
    """Every post of the dumps, and its vector (from the cache; the model embeds what is missing)."""
    posts: list[BasePost] = []
    texts: list[str] = []
    for dump in sorted(data.glob("*/Posts.xml.gz")):
        site = dump.parent.name
        read = [as_post(p) for p in read_dump(dump).posts]
        shift = NOW - timedelta(days=1) - max(p.created_at for p in read)
        titles = {p.thread_id: p.title for p in read if p.kind is PostKind.QUESTION}
        tags = {p.thread_id: p.tags for p in read if p.kind is PostKind.QUESTION}
        for post in read:
            title = post.title or titles.get(post.thread_id)
            texts.append(contribution_text(titles.get(post.thread_id), post.body))
            posts.append(BasePost(
                site=site, id=post.id, thread_id=post.thread_id, author_id=post.author_id, kind=post.kind,
                title=title, text=post.body, tags=post.tags or tags.get(post.thread_id, ()),
                created_at=post.created_at + shift, accepted=post.accepted, score=post.score,
                sparse=document_terms(title, post.body),
            ))
    cache = EmbeddingCache(cache_path)
    try:
        # The backend the serving matcher runs (MATCHER_EMBEDDER, else its default): its questions
        # are embedded by that one too.
        settings = MatcherSettings()
        model = build_embedder(settings.embedder, batch_size=settings.embed_batch_size, model_dir=cache_path.parent)
        cached = CachedEmbedder(model, cache)
        vectors = asyncio.run(cached.embed(texts))
        print(f"corpus: {len(posts)} posts from {data}, {cached.misses} embedded now, {cached.hits} cached", flush=True)
    finally:
        cache.close()
    return posts, np.asarray(vectors, dtype=np.float32)


def layout(size: int) -> list[tuple[str, int]]:
    """(tenant, points): the large tenant first, then 30 small ones of equal size."""
    small = int(size * (1 - LARGE_SHARE)) // SMALL_TENANTS
    return [(LARGE, size - small * SMALL_TENANTS), *((f"t{n:02d}", small) for n in range(SMALL_TENANTS))]


def nudged(vectors: np.ndarray, first: int, last: int) -> np.ndarray:
    """The vectors of corpus positions [first, last): the original for the first copy, nudged for the others."""
    positions = np.arange(first, last)
    rng = np.random.default_rng(first)
    noise = rng.standard_normal((len(positions), vectors.shape[1])).astype(np.float32)
    noise *= (NUDGE / np.linalg.norm(noise, axis=1, keepdims=True)) * (positions >= len(vectors))[:, None]
    moved = vectors[positions % len(vectors)] + noise
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def copies(posts: list[BasePost], vectors: np.ndarray, tenant: str, start: int, count: int):
    """Batches of `count` contributions of `tenant`: the corpus read cyclically from position `start`."""
    for first in range(start, start + count, BATCH):
        last = min(first + BATCH, start + count)
        yield [
            _contribution(posts, tenant, position, vector)
            for position, vector in zip(range(first, last), nudged(vectors, first, last).tolist(), strict=True)
        ]


def at(posts: list[BasePost], vectors: np.ndarray, tenant: str, start: int, position: int) -> Contribution:
    """The contribution `copies` writes at `position` (its batch's vectors drawn again)."""
    first = start + (position - start) // BATCH * BATCH
    vector = nudged(vectors, first, position + 1)[-1].tolist()
    return _contribution(posts, tenant, position, vector)


def _contribution(posts: list[BasePost], tenant: str, position: int, vector: list[float]) -> Contribution:
    post = posts[position % len(posts)]
    prefix = f"{position // len(posts)}.{post.site}."
    return Contribution(
        tenant=tenant, post_id=prefix + post.id, thread_id=prefix + post.thread_id,
        author_id=prefix + post.author_id, kind=post.kind, title=post.title, text=post.text,
        created_at=post.created_at, vector=vector, tags=post.tags, accepted=post.accepted, score=post.score,
        sparse=post.sparse,
    )


async def build(path: Path, posts: list[BasePost], vectors: np.ndarray, size: int) -> float:
    """Write `size` points through EdgeIndex; returns the seconds it took (flushed and closed)."""
    from services.matcher.index.edge import EdgeIndex

    index = await EdgeIndex.open(path)
    started, written, position = time.perf_counter(), 0, 0
    try:
        for tenant, count in layout(size):
            for contributions in copies(posts, vectors, tenant, position, count):
                await index.upsert(contributions)
                written += len(contributions)
                if written % 100_000 < BATCH:
                    rate = written / (time.perf_counter() - started)
                    print(f"  {written:>9,} points written, {rate:,.0f}/s", flush=True)
            position += count
    finally:
        await index.close()
    return time.perf_counter() - started


def questions(posts: list[BasePost], vectors: np.ndarray, size: int, per_tenant: int) -> list[dict]:
    """Questions of the large tenant and of the first small one: their own indexed questions, asked again."""
    found, start = [], 0
    for tenant, count in layout(size)[:2]:
        asked = [p for p in range(start, start + count) if posts[p % len(posts)].kind is PostKind.QUESTION]
        for position in asked[:: max(1, len(asked) // per_tenant)][:per_tenant]:
            c = at(posts, vectors, tenant, start, position)
            found.append({
                "tenant": tenant, "vector": list(c.vector), "text": contribution_text(c.title, c.text),
                "asker": c.author_id, "thread_id": c.thread_id, "tags": list(c.tags),
            })
        start += count
    return found


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk (segment files are sparse: their apparent size is larger)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def run_size(args, posts: list[BasePost], vectors: np.ndarray, size: int) -> dict:
    folder = args.folder or args.work / f"scale-{size}"
    built = folder / "build.json"
    if args.reuse and built.exists():
        seconds = json.loads(built.read_text())["seconds"]
        print(f"size {size:,}: reusing {folder / 'index'} (built in {seconds:.0f} s)", flush=True)
    else:
        if folder.exists():
            shutil.rmtree(folder)
        print(f"size {size:,}: writing {folder / 'index'}", flush=True)
        seconds = asyncio.run(build(folder / "index", posts, vectors, size))
        built.write_text(json.dumps({"seconds": seconds}))
        print(f"size {size:,}: built in {seconds:.0f} s ({size / seconds:,.0f} points/s)", flush=True)
    compacted = None
    if args.compact:
        from services.matcher.index.edge_shard import compact
        from services.matcher.index.payload import DIMENSIONS

        started = time.perf_counter()
        compact(folder / "index", DIMENSIONS)
        compacted = time.perf_counter() - started
        print(f"size {size:,}: compacted in {compacted:.0f} s", flush=True)
    asked = folder / "questions.json"
    asked.write_text(json.dumps(questions(posts, vectors, size, args.questions)))
    on_disk = disk_bytes(folder / "index")
    print(f"size {size:,}: serving it in a matcher process", flush=True)
    served = subprocess.run(
        [sys.executable, "-m", "tests.bench.scale_serve", str(folder), str(asked)],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    result = json.loads(served.stdout.strip().splitlines()[-1])
    if not args.keep:
        shutil.rmtree(folder)
    return {"size": size, "seconds": seconds, "compacted": compacted, "disk": on_disk, **result}


def _ms(values: dict, name: str) -> str:
    return " / ".join(f"{values[name][p]:.0f}" for p in ("p50", "p95", "p99"))


def _build(r: dict) -> str:
    built = f"{r['seconds']:.0f} s, {r['size'] / r['seconds']:,.0f}/s"
    return built if r["compacted"] is None else f"{built}; compacted in {r['compacted']:.0f} s"


def _own(r: dict) -> str:
    """RssAnon and RssFile: what the process allocated, and pages of the shard's files it maps (the
    kernel takes those back under memory pressure); absent from results of an older serve."""
    if "anon" not in r:
        return "-"
    return f"{r['anon'] / 2**30:.2f} own, {r['file'] / 2**30:.2f} mapped"


def _rank(tenant: dict) -> str:
    return f"{_ms(tenant, 'rank')} ms ({tenant['rank_first']:.0f})"


def _api(tenant: dict) -> str:
    return f"{tenant['api']['p50']:.0f} / {tenant['api']['p99']:.0f} ms ({tenant['embed']['p50']:.0f})"


def table(results: list[dict]) -> str:
    cores = os.cpu_count()
    lines = [
        f"| contributions | build | rank step {LARGE} p50/p95/p99 (first) | rank step {SMALL} p50/p95/p99 (first) "
        f"| search API {LARGE} p50/p99 (model alone p50) | search API {SMALL} p50/p99 (model alone p50) "
        f"| recall@300 vs exact | matcher RSS (peak; its own memory, mapped files) | index on disk | cores (load) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        large, small = r["tenants"][LARGE], r["tenants"][SMALL]
        lines.append(
            f"| {r['size']:,} ({large['points']:,} in {LARGE}, {small['points']:,} in {SMALL}) "
            f"| {_build(r)} "
            f"| {_rank(large)} | {_rank(small)} "
            f"| {_api(large)} | {_api(small)} | {min(large['recall'], small['recall']):.3f} "
            f"| {r['rss'] / 2**30:.2f} GiB ({r['hwm'] / 2**30:.2f}; {_own(r)}) | {r['disk'] / 2**30:.2f} GiB "
            f"| {cores} ({r['load']:.1f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated index sizes")
    parser.add_argument("--questions", type=int, default=100, help="questions timed per tenant")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=WORK, help="where the indexes and the vector cache go")
    parser.add_argument("--keep", action="store_true", help="keep each index after it is measured")
    parser.add_argument("--reuse", action="store_true", help="measure the index an earlier --keep run left, if any")
    parser.add_argument("--compact", action="store_true",
                        help="compact each index (int8 copies, vectors on disk) before serving it, as "
                        "`expertmatch compact-index` does")
    parser.add_argument("--folder", type=Path,
                        help="the folder of the one size in --sizes (default WORK/scale-SIZE): e.g. a copy "
                        "of a kept index, to compact it another way without touching the original")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.folder is not None and len(sizes) != 1:
        parser.error("--folder names the folder of one size: give --sizes a single size")
    posts, vectors = load_corpus(args.data, args.work / "embeddings.sqlite")
    results = []
    for size in sizes:
        results.append(run_size(args, posts, vectors, size))
        print(table(results[-1:]), flush=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
