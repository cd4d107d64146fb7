"""The one lexical encoder both engines use: BM25 sparse vectors from text (Qdrant Edge's Bm25).

The engine applies IDF (the sparse vector is configured with `Modifier.IDF`), so a document vector
holds only BM25's saturated term frequencies and a query vector weights each distinct term 1.
"""

from __future__ import annotations

from functools import cache

from qdrant_edge import Bm25, Bm25Config

# English analysis: lowercase, accents folded, English stopwords dropped, Snowball stemming, so
# "KRaft" matches "kraft" and "restarting" matches "restarts", while "ledgerd" stays one token.
_LANGUAGE = "english"


@cache
def _model() -> Bm25:
    # Built on first use, never at import.
    return Bm25(Bm25Config(language=_LANGUAGE, lowercase=True, ascii_folding=True))


def document_terms(title: str | None, text: str) -> dict[int, float]:
    """The sparse BM25 vector of a contribution: its title and its text as one document."""
    vector = _model().embed_document(f"{title}\n{text}" if title else text)
    return dict(zip(vector.indices, vector.values, strict=True))


def query_terms(text: str) -> dict[int, float]:
    """The sparse vector of a lexical query: each distinct analysed term weighs 1."""
    vector = _model().embed_query(text)
    return dict(zip(vector.indices, vector.values, strict=True))

