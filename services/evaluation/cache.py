"""Embeddings cached on disk, keyed by the model's name and the exact text, so reruns skip the model."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from services.matcher.embedder import Embedder

# How many texts go to the model per call: large enough to keep its batches full.
CHUNK = 512


def text_key(model: str, text: str) -> bytes:
    """sha256 of the model name and the text: a different model never reads another's vectors."""
    return hashlib.sha256(f"{model}\0{text}".encode()).digest()


class EmbeddingCache:
    """Vectors in one SQLite file, as float32 blobs keyed by `text_key`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, list[float]]:
        found: dict[bytes, list[float]] = {}
        # SQLite caps the number of parameters in one statement.
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part)
            found.update((key, np.frombuffer(blob, dtype=np.float32).tolist()) for key, blob in rows)
        return found

    def put_many(self, items: Sequence[tuple[bytes, Sequence[float]]]) -> None:
        rows = [(key, np.asarray(vector, dtype=np.float32).tobytes()) for key, vector in items]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)

    def close(self) -> None:
        self._db.close()


class CachedEmbedder:
    """An Embedder that asks the model only for texts the cache has not seen (same name, same dimension)."""

    def __init__(
        self, embedder: Embedder, cache: EmbeddingCache, *, progress: Callable[[int], None] | None = None
    ) -> None:
        self.name = embedder.name
        self.dimension = embedder.dimension
        self._embedder = embedder
        self._cache = cache
        # Told how many texts each step settled (from the cache or the model); None to stay quiet.
        self.progress = progress
        self.hits = 0
        self.misses = 0

    async def lengths(self, texts: Sequence[str]) -> list[int]:
        return await self._embedder.lengths(texts)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [text_key(self.name, text) for text in texts]
        found = self._cache.get_many(list(dict.fromkeys(keys)))
        self.hits += sum(1 for key in keys if key in found)
        missing = list({key: text for key, text in zip(keys, texts, strict=True) if key not in found}.items())
        # Similar lengths share a model batch, so less of each batch is padding.
        missing.sort(key=lambda item: len(item[1]))
        self._report(len(texts) - len(missing))
        for start in range(0, len(missing), CHUNK):
            part = missing[start : start + CHUNK]
            vectors = await self._embedder.embed([text for _, text in part])
            # Stored as it is read back (float32), so a first run and a rerun rank identically.
            stored = [np.asarray(v, dtype=np.float32).tolist() for v in vectors]
            self._cache.put_many(list(zip((key for key, _ in part), stored, strict=True)))
            found.update(zip((key for key, _ in part), stored, strict=True))
            self.misses += len(part)
            self._report(len(part))
        return [found[key] for key in keys]

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done)


def default_cache_path(data_dir: Path | None = None) -> Path:
    """Under the data folder when one is set, else the user's cache folder."""
    base = data_dir / "cache" if data_dir else Path.home() / ".cache" / "expertmatch"
    return base / "embeddings.sqlite"
