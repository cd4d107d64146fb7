"""The matcher's rank step alone, on Qdrant Edge, in its parts: which index calls and which Python take the time.

`python -m tests.bench.rank`: the first 1,000 posts of se-quantumcomputing in an EdgeIndex, then
the next 60 questions ranked as `MatcherService.rank_question` ranks a new post, each at its own
time (as `make bench` asks them). `--size 100000` ranks on the layout of `make bench-scale`
instead (its large tenant and its first small one, all asked a minute after the newest post).
Prints p50 / p95 / p99 of the whole step, of its four stages, of every index method it calls (the
wall time of each call, which overlap where the step gathers them) and of the shard's own time
per method, and how many calls a question makes; `--out` writes every ranking, to compare two commits
on one index (`--index` keeps it for the next run); `--profile` adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import functools
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np

from services.evaluation.cache import CachedEmbedder, EmbeddingCache, default_cache_path
from services.evaluation.replay import as_post, contribution_texts
from services.matcher import service as service_module
from services.matcher.embedder import SentenceEmbedder
from services.matcher.index.base import Contribution
from services.matcher.index.edge import EdgeIndex
from services.matcher.service import MatcherService, RankingPolicy
from services.matcher.texts import contribution_text
from services.matcher.training import TrainingPolicy
from shared.stackexchange import read_dump

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TENANT = "bench"
STAGES = ("candidate_features", "with_feedback", "rank_candidates")


def _percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return " / ".join(f"{np.percentile(ms, p):7.1f}" for p in (50, 95, 99))


class Timings:
    """Seconds per name, per question: the stages of the rank step and each index call."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.questions: list[tuple[dict[str, float], dict[str, int]]] = []

    def add(self, name: str, seconds: float) -> None:
        self.current[name] += seconds
        self.calls[name] += 1

    def next_question(self) -> None:
        self.questions.append((dict(self.current), dict(self.calls)))
        self.current, self.calls = defaultdict(float), defaultdict(int)


# The index method a shard call is made for (calls run side by side where the rank step gathers them).
_METHOD: contextvars.ContextVar[str] = contextvars.ContextVar("method", default="")


class TimedIndex:
    """The index with every awaited call timed (by method name); everything else passes through."""

    def __init__(self, index, timings: Timings) -> None:
        self._index = index
        self._timings = timings

    def __getattr__(self, name: str):
        found = getattr(self._index, name)
        if not asyncio.iscoroutinefunction(found):
            return found

        @functools.wraps(found)
        async def timed(*args, **kwargs):
            started = time.perf_counter()
            token = _METHOD.set(name)
            try:
                return await found(*args, **kwargs)
            finally:
                self._timings.add(f"index.{name}", time.perf_counter() - started)
                _METHOD.reset(token)

        return timed


def _timed_stages(timings: Timings) -> None:
    """Time the rank step's stages where the service calls them (the bench's own process only)."""
    for name in STAGES:
        original = getattr(service_module, name)
        if asyncio.iscoroutinefunction(original):
            async def timed(*args, _original=original, _name=name, **kwargs):
                started = time.perf_counter()
                try:
                    return await _original(*args, **kwargs)
                finally:
                    timings.add(f"stage.{_name}", time.perf_counter() - started)
        else:
            def timed(*args, _original=original, _name=name, **kwargs):
                started = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    timings.add(f"stage.{_name}", time.perf_counter() - started)
        setattr(service_module, name, timed)
    closest = MatcherService._closest_posts

    async def timed_closest(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return await closest(self, *args, **kwargs)
        finally:
            timings.add("stage._closest_posts", time.perf_counter() - started)

    MatcherService._closest_posts = timed_closest


def _timed_shard(index: EdgeIndex, timings: Timings) -> None:
    """Time each call on the shard's worker thread too: Edge's own time, without the hops and conversions."""
    run = index.engine.run

    async def timed_run(call):
        method = _METHOD.get()

        def on_shard(shard):
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return call(shard)
            finally:
                timings.add("edge (CPU)", time.thread_time() - cpu)
                seconds = time.perf_counter() - started
                timings.add("edge (on the shard's thread)", seconds)
                timings.add(f"edge.{method}", seconds)

        return await run(on_shard)

    index.engine.run = timed_run


def _embedded(texts: list[str]) -> list[list[float]]:
    cache = EmbeddingCache(default_cache_path())
    try:
        embedder = CachedEmbedder(SentenceEmbedder(), cache)
        vectors = asyncio.run(embedder.embed(texts))
        print(f"embedded {len(texts)} texts, {embedder.misses} by the model", file=sys.stderr, flush=True)
        return vectors
    finally:
        cache.close()


def dataset(site: str, posts: int, count: int) -> tuple[list[Contribution], list[dict]]:
    """The first `posts` of a dump as contributions, and the next `count` questions, each at its own time."""
    dump = read_dump(DATA / site / "Posts.xml.gz").posts
    history, later = dump[:posts], [p for p in dump[posts:] if p.kind == "question"][:count]
    vectors = _embedded(contribution_texts(history) + contribution_texts(later))
    titles = {p.thread_id: as_post(p).title for p in history if p.kind == "question"}
    contributions = []
    for raw, vector in zip(history, vectors, strict=False):
        post = as_post(raw, TENANT)
        contributions.append(Contribution(
            tenant=TENANT, post_id=post.id, thread_id=post.thread_id, author_id=post.author_id, kind=post.kind,
            title=post.title or titles.get(post.thread_id), text=post.body, created_at=post.created_at,
            vector=vector, tags=post.tags, accepted=post.accepted, score=post.score,
        ))
    asked = []
    for raw, vector in zip(later, vectors[len(history):], strict=True):
        post = as_post(raw, TENANT)
        asked.append({
            "tenant": TENANT, "vector": vector, "text": contribution_text(post.title, post.body),
            "asker": post.author_id, "thread_id": post.thread_id, "tags": list(post.tags),
            "now": post.created_at.isoformat(),
        })
    return contributions, asked


async def _write(path: Path, contributions: list[Contribution]) -> None:
    index = await EdgeIndex.open(path)
    try:
        for start in range(0, len(contributions), 1000):
            await index.upsert(contributions[start:start + 1000])
    finally:
        await index.close()


def _scale_now():
    from tests.bench import scale

    return scale.NOW


def prepare(args) -> tuple[Path, list[dict]]:
    """The index to rank on (built unless `--index` holds one) and the questions to ask it."""
    folder = args.index or Path(tempfile.mkdtemp(prefix="rank-bench-"))
    asked_file = folder / "questions.json"
    if asked_file.exists():
        print(f"reusing {folder}", file=sys.stderr, flush=True)
        asked = json.loads(asked_file.read_text())
        # A folder `make bench-scale --keep` left: its questions are asked a minute after its newest post.
        for q in asked:
            q.setdefault("now", (_scale_now() + timedelta(minutes=1)).isoformat())
        tenants = dict.fromkeys(q["tenant"] for q in asked)
        return folder, [q for t in tenants for q in [q for q in asked if q["tenant"] == t][: args.questions]]
    folder.mkdir(parents=True, exist_ok=True)
    if args.size:
        from tests.bench import scale

        posts, vectors = scale.load_corpus(DATA, default_cache_path())
        asyncio.run(scale.build(folder / "index", posts, vectors, args.size))
        asked = scale.questions(posts, vectors, args.size, args.questions)
        for q in asked:
            q["now"] = (_scale_now() + timedelta(minutes=1)).isoformat()
    else:
        contributions, asked = dataset(args.dataset, args.posts, args.questions)
        asyncio.run(_write(folder / "index", contributions))
    asked_file.write_text(json.dumps(asked))
    return folder, asked


async def rank_all(folder: Path, asked: list[dict], timings: Timings, profile: cProfile.Profile | None) -> list:
    """Each question ranked once (after one untimed question per tenant); returns seconds and rankings."""
    from datetime import datetime

    index = await EdgeIndex.open(folder / "index")
    _timed_shard(index, timings)
    service = MatcherService(
        index=TimedIndex(index, timings), embedder=None, publish=None,  # type: ignore[arg-type]
        # No refit while the rank step is timed: the hand-set fusion ranks, a linear scorer as a learned one is.
        policy=RankingPolicy(training=TrainingPolicy(min_examples=10**9)),
    )
    results = []
    try:
        for warm in dict.fromkeys(q["tenant"] for q in asked):
            first = next(q for q in asked if q["tenant"] == warm)
            await _rank(service, first, datetime.fromisoformat(first["now"]) + timedelta(days=9999))
        timings.next_question()
        timings.questions.clear()
        for q in asked:
            if profile is not None:
                profile.enable()
            started, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
            ranked = await _rank(service, q, datetime.fromisoformat(q["now"]))
            seconds = time.perf_counter() - started
            # CPU times: steadier than the wall when other work shares the cores. The process's
            # (both threads), and the event loop's thread alone (the Python around the index).
            timings.add("rank_question (CPU)", time.process_time() - cpu)
            timings.add("rank_question (CPU, loop thread)", time.thread_time() - loop_cpu)
            if profile is not None:
                profile.disable()
            timings.add("rank_question", seconds)
            timings.next_question()
            results.append({
                "tenant": q["tenant"], "thread_id": q["thread_id"], "participants": ranked.participants,
                "pool": sorted(ranked.pool), "candidates": [c.model_dump(mode="json") for c in ranked.candidates],
            })
    finally:
        await index.close()
    return results


async def _rank(service: MatcherService, q: dict, now):
    return await service.rank_question(
        tenant=q["tenant"], vector=q["vector"], asker=q["asker"], thread_id=q["thread_id"],
        audience=("public",), now=now, limit=10, text=q["text"], tags=q["tags"],
    )


def report(timings: Timings, tenants: list[str], asked: list[dict]) -> None:
    names = {name for seconds, _ in timings.questions for name in seconds}
    names = sorted(names, key=lambda n: (not n.startswith("rank_question"), n))
    for tenant in tenants:
        mine = [t for t, q in zip(timings.questions, asked, strict=True) if q["tenant"] == tenant]
        print(f"\ntenant {tenant}: {len(mine)} questions; ms p50 / p95 / p99, calls per question")
        for name in names:
            seconds = [s.get(name, 0.0) for s, _ in mine]
            calls = np.mean([c.get(name, 0) for _, c in mine])
            print(f"  {name:32s} {_percentiles(seconds)}   {calls:5.1f}")
        # The shard's thread holds the GIL for each call: the step is its time plus the rest.
        rest = [s["rank_question"] - s.get("edge (on the shard's thread)", 0.0) for s, _ in mine]
        print(f"  {'(the rest: Python and waits)':32s} {_percentiles(rest)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="se-quantumcomputing")
    parser.add_argument("--posts", type=int, default=1000, help="history posts to index")
    parser.add_argument("--questions", type=int, default=60,
                        help="questions to rank (per tenant with --size; the first so many of a reused --index)")
    parser.add_argument("--size", type=int, default=0, help="the bench-scale layout at this many points instead")
    parser.add_argument("--index", type=Path, help="a folder to keep the index and questions in, and reuse")
    parser.add_argument("--repeat", type=int, default=1, help="rank every question this many times")
    parser.add_argument("--out", type=Path, help="write every ranking here (JSON)")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the timed questions")
    args = parser.parse_args(argv)

    folder, asked = prepare(args)
    asked = asked * args.repeat
    timings = Timings()
    _timed_stages(timings)
    profile = cProfile.Profile() if args.profile else None
    try:
        results = asyncio.run(rank_all(folder, asked, timings, profile))
    finally:
        if args.index is None:
            shutil.rmtree(folder)
    report(timings, list(dict.fromkeys(q["tenant"] for q in asked)), asked)
    if profile is not None:
        print()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
