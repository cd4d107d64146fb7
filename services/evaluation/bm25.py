"""BM25 over a corpus that only grows: bm25s's scores, without rebuilding its index for every query.

bm25s precomputes each (document, term) score, so a new document changes them all (N, the
document frequencies and the mean length move) and the index must be rebuilt. Here the postings
grow in place and a query scores only its own terms' postings, with bm25s's Lucene formulas and
float32 arithmetic in its order, so the scores are bm25s's to the bit (tests/unit compare them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

# bm25s.BM25()'s defaults: the Lucene variant of term frequency and IDF, float32 scores.
K1 = 1.5
B = 0.75


class _Postings:
    """The documents holding one term and how often, appended in document order."""

    __slots__ = ("_pending", "documents", "frequencies")

    def __init__(self) -> None:
        self.documents = np.zeros(0, dtype=np.int64)
        self.frequencies = np.zeros(0, dtype=np.float32)
        self._pending: list[tuple[int, int]] = []

    def add(self, document: int, frequency: int) -> None:
        self._pending.append((document, frequency))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pending:
            documents, frequencies = zip(*self._pending, strict=True)
            self.documents = np.concatenate([self.documents, np.asarray(documents, dtype=np.int64)])
            self.frequencies = np.concatenate([self.frequencies, np.asarray(frequencies, dtype=np.float32)])
            self._pending.clear()
        return self.documents, self.frequencies

    def __len__(self) -> int:
        return len(self.documents) + len(self._pending)


class GrowingBm25:
    """Documents (lists of terms) are added in order; `scores(query)` is bm25s's `get_scores` over them all."""

    def __init__(self) -> None:
        self._postings: dict[str, _Postings] = {}
        self._lengths: list[int] = []
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, terms: Sequence[str]) -> None:
        document = len(self._lengths)
        for term, frequency in Counter(terms).items():
            self._postings.setdefault(term, _Postings()).add(document, frequency)
        self._lengths.append(len(terms))
        self._total_length += len(terms)

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """One float32 score per document, in the order they were added."""
        count = len(self._lengths)
        scores = np.zeros(count, dtype=np.float32)
        if not count:
            return scores
        lengths = np.asarray(self._lengths, dtype=np.int64)
        # bm25s takes the mean of the lengths in float64: exact for integer sums below 2**53.
        mean_length = np.float64(self._total_length) / count
        for term in query:  # a repeated query term counts again, as in bm25s
            postings = self._postings.get(term)
            if postings is None:
                continue
            documents, frequencies = postings.arrays()
            frequency = len(documents)
            idf = np.float32(math.log(1 + (count - frequency + 0.5) / (frequency + 0.5)))
            saturation = frequencies / (K1 * ((1 - B) + B * lengths[documents] / mean_length) + frequencies)
            scores[documents] += (idf * saturation).astype(np.float32)
        return scores
