"""The embedding cache: the model sees a text once per model name, and reruns read the same vectors."""

from __future__ import annotations

import pytest

from services.evaluation.cache import CachedEmbedder, EmbeddingCache, text_key
from tests.fakes import FakeEmbedder

pytestmark = pytest.mark.unit


class OtherModel(FakeEmbedder):
    name = "another-model"


async def test_a_text_goes_to_the_model_once_and_comes_back_the_same(tmp_path):
    model = FakeEmbedder()
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embedder = CachedEmbedder(model, cache)

    first = await embedder.embed(["mash temperature", "hop schedule", "mash temperature"])
    again = await embedder.embed(["hop schedule", "yeast pitch"])

    assert model.calls == [["hop schedule", "mash temperature"], ["yeast pitch"]]
    assert first[0] == first[2] == pytest.approx(model.vector("mash temperature"), abs=1e-6)
    assert again[0] == first[1]
    assert (embedder.hits, embedder.misses) == (1, 3)


async def test_the_cache_outlives_the_process_that_filled_it(tmp_path):
    path = tmp_path / "e.sqlite"
    first = CachedEmbedder(FakeEmbedder(), EmbeddingCache(path))
    [vector] = await first.embed(["decoction"])

    model = FakeEmbedder()
    [reread] = await CachedEmbedder(model, EmbeddingCache(path)).embed(["decoction"])

    assert model.calls == []
    assert reread == vector


async def test_another_model_never_reads_the_first_models_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    await CachedEmbedder(FakeEmbedder(), cache).embed(["lager"])
    other = OtherModel()

    await CachedEmbedder(other, cache).embed(["lager"])

    assert other.calls == [["lager"]]
    assert text_key("all-MiniLM-L6-v2", "lager") != text_key("another-model", "lager")


async def test_progress_counts_every_text_settled(tmp_path):
    done: list[int] = []
    embedder = CachedEmbedder(FakeEmbedder(), EmbeddingCache(tmp_path / "e.sqlite"), progress=done.append)
    await embedder.embed(["a", "b"])
    await embedder.embed(["a", "b", "c"])
    assert sum(done) == 5
