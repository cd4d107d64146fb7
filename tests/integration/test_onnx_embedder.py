"""The ONNX Runtime backends against the PyTorch model: the same vectors, in order, from a file exported once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from services.matcher.embedder import SentenceEmbedder
from services.matcher.onnx_embedder import OnnxEmbedder
from shared.stackexchange import read_dump
from tests.bench.pipeline import _texts
from tests.conftest import shared_dataset

pytestmark = pytest.mark.integration

# Short and long, plain and technical, one past the model's 256 tokens (cut the same way by both),
# one with surrounding blanks: what contributions look like.
TEXTS = [
    "Pods crash after deploying to the cluster\n\nOur pods go into CrashLoopBackOff after the deploy.",
    "Salaries go out on the last working day before the 25th; the payroll team sends payslips by email.",
    "  Where do I find my payslip and tax certificate?  ",
    "Why does my Grover search need sqrt(N) oracle calls? " * 40,
    "ok",
    "Create an Ingress resource pointing at the Service; the nginx ingress controller handles TLS.",
]
# float32 on another runtime: rounding only. int8 weights move vectors more, short texts most: the
# worst cosine was 0.99 on 1,000 se-quantumcomputing posts (tests/bench/encoders.py), 0.971 for "ok".
FP32_COSINE = 0.999
INT8_COSINE = 0.96


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """One export per module for the tests that only read the file."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def torch_embedder():
    embedder = SentenceEmbedder(batch_size=4)
    embedder.load(timeout=120)
    yield embedder
    embedder.close()


def embed(embedder, texts: list[str]) -> np.ndarray:
    return np.asarray(asyncio.run(embedder.embed(texts)))


def loaded(model_dir, **options) -> OnnxEmbedder:
    embedder = OnnxEmbedder(model_dir=model_dir, batch_size=4, **options)
    embedder.load(timeout=300)
    return embedder


def real_texts(count: int) -> list[str]:
    return _texts(read_dump(shared_dataset("se-quantumcomputing")).posts[:count])


@pytest.mark.parametrize(("quantized", "bound"), [(False, FP32_COSINE), (True, INT8_COSINE)])
def test_onnx_vectors_agree_with_torch_on_written_and_real_posts(model_dir, torch_embedder, quantized, bound):
    texts = TEXTS + real_texts(40)
    onnx = loaded(model_dir, quantized=quantized)
    try:
        vectors = embed(onnx, texts)
    finally:
        onnx.close()
    reference = embed(torch_embedder, texts)

    assert vectors.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.einsum("ij,ij->i", vectors, reference)
    assert cosines.min() >= bound, f"text {cosines.argmin()}: cosine {cosines.min():.4f} to torch's"


def test_length_sorting_gives_each_text_its_own_vector_in_the_callers_order(model_dir):
    # Longest first, so sorting reorders every batch.
    texts = sorted(TEXTS, key=len, reverse=True)
    sorted_, unsorted = loaded(model_dir), loaded(model_dir, sort_by_length=False)
    try:
        together = embed(sorted_, texts)
        alone = np.vstack([embed(unsorted, [text]) for text in texts])
        unsorted_together = embed(unsorted, texts)
    finally:
        sorted_.close()
        unsorted.close()

    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(together, unsorted_together, atol=1e-5)


def test_the_exported_file_is_read_again_on_the_next_start_not_exported_again(model_dir):
    loaded(model_dir).close()
    [kept] = model_dir.glob("*fp32*.onnx")
    before = {path.name: path.stat().st_mtime_ns for path in model_dir.iterdir()}

    second = loaded(model_dir)
    try:
        assert second.exported is False
        assert {path.name: path.stat().st_mtime_ns for path in model_dir.iterdir()} == before
        assert embed(second, ["hello"]).shape == (1, 384)
    finally:
        second.close()


def test_a_cut_short_model_file_is_exported_again(tmp_path, torch_embedder):
    loaded(tmp_path).close()
    [kept] = tmp_path.glob("*.onnx")
    whole = kept.stat().st_size
    with kept.open("r+b") as file:
        file.truncate(whole // 2)

    again = loaded(tmp_path)
    try:
        assert again.exported is True
        assert kept.stat().st_size > whole // 2
        [vector] = embed(again, TEXTS[:1])
    finally:
        again.close()
    [reference] = embed(torch_embedder, TEXTS[:1])
    assert float(vector @ reference) >= FP32_COSINE
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_each_precision_and_length_has_its_own_file(tmp_path):
    for options in ({"quantized": True}, {"max_seq_length": 128}):
        loaded(tmp_path, **options).close()

    names = [path.name for path in tmp_path.glob("*.onnx")]
    # int8 is made from the float32 file, kept too; the length is cut by the tokenizer, not in the file.
    assert sorted("int8" in name for name in names) == [False, True]


def test_the_model_built_at_install_is_read_and_never_exported_at_start(tmp_path):
    built, data = tmp_path / "installed", tmp_path / "data-models"
    # What make venv and the image run.
    first = subprocess.run(
        [sys.executable, "-m", "services.cli", "build-model", "--dir", str(built)], capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert [line.endswith(" s") and " built in " in line for line in first.stdout.splitlines()] == [True, True]

    matcher = OnnxEmbedder(model_dir=data, built_in=(built,), quantized=True)
    matcher.start()
    try:
        matcher.load()
        assert matcher.exported is False
        assert not data.exists(), "nothing exported into the data folder"
        assert embed(matcher, ["hello"]).shape == (1, 384)
    finally:
        matcher.close()

    [int8] = built.glob("*int8*.onnx")
    int8.write_bytes(b"not a model")
    again = subprocess.run(
        [sys.executable, "-m", "services.cli", "build-model", "--dir", str(built)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].endswith(": already built")
    assert "is unreadable" in again.stderr and " built in " in again.stdout.splitlines()[1]
    assert int8.stat().st_size > 1_000_000


def test_a_texts_length_is_its_tokens_as_the_model_reads_them(model_dir):
    embedder = loaded(model_dir, quantized=True)
    try:
        short, cut = asyncio.run(embedder.lengths(["  ok  ", TEXTS[3]]))
    finally:
        embedder.close()
    assert short == 3, "[CLS] ok [SEP]"
    assert cut == 256, "cut to the model's 256 tokens, as it embeds it"
