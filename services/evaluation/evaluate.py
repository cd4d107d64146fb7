"""One evaluation run: read a dump, embed it through the cache, replay it through every system, score."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from tqdm import tqdm

from services.evaluation.baselines import Bm25Experts, MostActive
from services.evaluation.cache import CachedEmbedder, EmbeddingCache
from services.evaluation.ceiling import score_ceiling
from services.evaluation.floor import floor_table
from services.evaluation.metrics import hit_curve, summarize
from services.evaluation.replay import (
    RELEVANCES,
    MatcherSystem,
    ReplayResult,
    SimulatedInvitations,
    contribution_texts,
    never_publish,
    replay,
)
from services.matcher.embedder import Embedder
from services.matcher.index import EdgeIndex
from services.matcher.service import MatcherService, RankingPolicy
from shared.stackexchange import read_dump

# People per ranking: a relevant person ranked below this counts as not found.
DEPTH = 100
CURVE_KS = tuple(range(1, 21))
# The accepted answerer's accepted answers before the question: newcomers to regulars.
STRATA = (("0", 0, 0), ("1-4", 1, 4), ("5-19", 5, 19), ("20+", 20, None))


@dataclass
class Evaluation:
    dataset: str
    n_test: int
    coverage: float
    seconds: float
    systems: dict[str, dict[str, dict[str, float | int]]]
    curves: dict[str, dict[str, list[float]]]  # Hit@k for CURVE_KS, by system and relevance
    rank_ms: dict[str, float]
    notes: dict[str, object] = field(default_factory=dict)
    # expertmatch's features with weights fit on the test questions themselves (acc), if asked for.
    ceiling: dict[str, float | int] | None = None
    # By expertmatch system: the share of test questions with an accepted answer whose accepted
    # answerer was in the candidate pool at all (beside `coverage`: had they posted before).
    in_pool: dict[str, float] = field(default_factory=dict)
    # By system, then stratum of the accepted answerer's prior accepted answers: MRR (acc) and n.
    strata: dict[str, dict[str, dict[str, float | int]]] = field(default_factory=dict)
    # expertmatch's top 3 under each similarity floor: who is kept, who dropped, who answered.
    floors: list[dict[str, float | int]] = field(default_factory=list)

    def to_json(self) -> dict:
        """The report's JSON: the fixed keys, plus the rank step's latency."""
        return {
            "dataset": self.dataset,
            "n_test": self.n_test,
            "coverage": self.coverage,
            "in_pool": self.in_pool,
            "seconds": self.seconds,
            "systems": self.systems,
            "strata": self.strata,
            "floors": self.floors,
            "rank_ms": self.rank_ms,
        } | ({"ceiling": self.ceiling} if self.ceiling is not None else {})


def dataset_name(path: Path) -> str:
    """`.../se-beer/Posts.xml.gz` -> "se-beer"; any other file name is its own name."""
    return path.parent.name if path.name.startswith("Posts.xml") else path.name


async def evaluate(
    path: Path,
    *,
    embedder: Embedder,
    cache: EmbeddingCache,
    policy: RankingPolicy,
    test_fraction: float = 0.2,
    feedback: SimulatedInvitations | None = None,
    ceiling: bool = False,
    show_progress: bool = True,
) -> Evaluation:
    """Replay the dump at `path` through expertmatch, bm25 and most_active, and score all three.

    With `feedback`, a fourth system, `expertmatch+feedback`, is expertmatch on an index of its
    own that also hears how its invitations went. With `ceiling`, the features expertmatch ranked
    the test questions by are refit on those questions' own accepted answerers (services/evaluation/ceiling.py).
    """
    started = time.perf_counter()
    read = read_dump(path)
    posts = read.posts
    cached = CachedEmbedder(embedder, cache)
    with tqdm(total=len(posts), desc="embedding", unit="post", disable=not show_progress) as bar:
        cached.progress = bar.update
        await cached.embed(contribution_texts(posts))
    cached.progress = None
    with TemporaryDirectory(prefix="expertmatch-eval-") as folder:
        async with AsyncExitStack() as stack:

            async def matcher_system(name: str, **options) -> MatcherSystem:
                index = await EdgeIndex.open(Path(folder) / name)
                stack.push_async_callback(index.close)
                service = MatcherService(index=index, embedder=cached, publish=never_publish, policy=policy)
                return MatcherSystem(service, cached, name=name, **options)

            matcher, bm25 = await matcher_system("expertmatch"), Bm25Experts()
            systems = [matcher, bm25, MostActive()]
            if feedback is not None:
                systems.append(await matcher_system("expertmatch+feedback", feedback=feedback))
            matchers = [s for s in systems if isinstance(s, MatcherSystem)]
            with tqdm(total=len(posts), desc="replay", unit="post", disable=not show_progress) as bar:
                result = await replay(posts, systems, test_fraction=test_fraction, depth=DEPTH, progress=bar.update)
            bound = await score_ceiling(matcher, result, policy.training.fit_settings, DEPTH) if ceiling else None
    return Evaluation(
        dataset=dataset_name(path),
        n_test=result.n_test,
        coverage=result.coverage,
        seconds=time.perf_counter() - started,
        systems={s.name: _scores(result, s.name) for s in systems},
        curves={s.name: _curves(result, s.name) for s in systems},
        rank_ms=_percentiles(matcher.rank_ms),
        ceiling=bound,
        in_pool={m.name: _in_pool(result, m) for m in matchers},
        strata={s.name: _strata(result, s.name) for s in systems},
        floors=floor_table(result, matcher),
        notes={
            "posts": len(posts),
            "skipped": dict(read.skipped),
            "dated": read.has_dates,
            "embedded": cached.misses,
            "bm25_s": bm25.seconds,
        },
    )


def _judged(result: ReplayResult, system: str, relevance: str) -> list[tuple[list[str], frozenset[str]]]:
    return [(j.rankings[system], j.relevant[relevance]) for j in result.judged]


def _scores(result: ReplayResult, system: str) -> dict[str, dict[str, float | int]]:
    return {relevance: summarize(_judged(result, system, relevance)) for relevance in RELEVANCES}


def _curves(result: ReplayResult, system: str) -> dict[str, list[float]]:
    return {relevance: hit_curve(_judged(result, system, relevance), CURVE_KS) for relevance in RELEVANCES}


def _in_pool(result: ReplayResult, system: MatcherSystem) -> float:
    with_answer = [j for j in result.judged if j.relevant["acc"]]
    found = [j for j in with_answer if j.relevant["acc"] & system.pools.get(j.question_id, frozenset())]
    return len(found) / len(with_answer) if with_answer else 0.0


def _strata(result: ReplayResult, system: str) -> dict[str, dict[str, float | int]]:
    """MRR (acc) by how many accepted answers the accepted answerer had before the question."""
    found = {}
    for label, low, high in STRATA:
        judged = [
            (j.rankings[system], j.relevant["acc"])
            for j in result.judged
            if j.prior_accepted is not None and j.prior_accepted >= low and (high is None or j.prior_accepted <= high)
        ]
        scores = summarize(judged)
        found[label] = {"mrr": scores["mrr"], "n": scores["n"]}
    return found


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p95": 0.0}
    return {"p50": float(np.percentile(samples, 50)), "p95": float(np.percentile(samples, 95))}
