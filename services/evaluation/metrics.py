"""Ranking metrics over people with binary relevance: MRR, P@1, Hit@k, nDCG@k.

A ranking is cut at the replay's depth; a relevant person not in it contributes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence


def first_hit(ranking: Sequence[str], relevant: Collection[str]) -> int | None:
    """1-based rank of the first relevant person, or None."""
    return next((rank for rank, person in enumerate(ranking, 1) if person in relevant), None)


def reciprocal_rank(ranking: Sequence[str], relevant: Collection[str]) -> float:
    rank = first_hit(ranking, relevant)
    return 1.0 / rank if rank else 0.0


def hit_at(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 if a relevant person is in the top k (so P@1 when k is 1), else 0."""
    rank = first_hit(ranking, relevant)
    return 1.0 if rank is not None and rank <= k else 0.0


def ndcg_at(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary-gain nDCG: DCG of the top k over the DCG of a perfect top k."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, person in enumerate(ranking[:k], 1) if person in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def summarize(judged: Sequence[tuple[Sequence[str], Collection[str]]]) -> dict[str, float | int]:
    """Mean MRR, P@1, Hit@3, Hit@5 and nDCG@10 over the questions that have a relevant person, and their n.

    Hit@3 with every answerer relevant is what inviting three people buys: the share of
    questions where at least one of them answered.
    """
    counted = [(ranking, relevant) for ranking, relevant in judged if relevant]
    n = len(counted)

    def mean(values: list[float]) -> float:
        return sum(values) / n if n else 0.0

    return {
        "mrr": mean([reciprocal_rank(r, rel) for r, rel in counted]),
        "p@1": mean([hit_at(r, rel, 1) for r, rel in counted]),
        "hit@3": mean([hit_at(r, rel, 3) for r, rel in counted]),
        "hit@5": mean([hit_at(r, rel, 5) for r, rel in counted]),
        "ndcg@10": mean([ndcg_at(r, rel, 10) for r, rel in counted]),
        "n": n,
    }


def hit_curve(judged: Sequence[tuple[Sequence[str], Collection[str]]], ks: Sequence[int]) -> list[float]:
    """Hit@k for each k, over the questions that have a relevant person."""
    counted = [(ranking, relevant) for ranking, relevant in judged if relevant]
    if not counted:
        return [0.0 for _ in ks]
    return [sum(hit_at(r, rel, k) for r, rel in counted) / len(counted) for k in ks]
