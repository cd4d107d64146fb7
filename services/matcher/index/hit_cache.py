"""Hits kept by point id, for an index only this process writes: the same posts come back question
after question, and reading their payloads is most of what a search costs on Qdrant Edge.

Measured by tests/bench/rank.py: the dense top 300 took 5.7 ms with payloads and 0.7 ms without on
1,000 posts (4.2 / 1.1 ms in a 2k tenant, 20.5 / 14.1 ms in a 40k one), and 44-97% of the posts a
question's searches find had been found by an earlier question.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

from services.matcher.index.base import Hit

# ~1.5 kB a hit (its text is cut at 2,000 characters): ~75 MB when full.
DEFAULT_SIZE = 50_000


class HitCache:
    """Hits (similarity 0) by point id, the least recently used dropped first.

    Every write forgets what it may change and counts itself: a read that overlapped a write
    (its generation is no longer current) keeps nothing, so nothing stale is ever kept.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._hits: OrderedDict[str, Hit] = OrderedDict()
        self.generation = 0

    def get(self, point_id: str) -> Hit | None:
        hit = self._hits.get(point_id)
        if hit is not None:
            self._hits.move_to_end(point_id)
        return hit

    def keep(self, generation: int, hits: Mapping[str, Hit]) -> None:
        """Keep hits read back while `generation` was current, unless a write came since."""
        if generation != self.generation:
            return
        self._hits.update(hits)
        while len(self._hits) > self._size:
            self._hits.popitem(last=False)

    def forget(self, point_ids: Iterable[str]) -> None:
        """Before and after writing these points."""
        self.generation += 1
        for point_id in point_ids:
            self._hits.pop(point_id, None)

    def clear(self) -> None:
        """Before and after a write whose points are not known by id (an erasure)."""
        self.generation += 1
        self._hits.clear()

    def __len__(self) -> int:
        return len(self._hits)
