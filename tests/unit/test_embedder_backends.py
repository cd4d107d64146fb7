"""Choosing the embedding backend: one setting, a clear error for a name it does not know, own cache keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.evaluation.cache import text_key
from services.matcher.embedder import BACKENDS, SentenceEmbedder, build_embedder
from services.matcher.onnx_embedder import OnnxEmbedder
from services.matcher.settings import MatcherSettings
from shared.env import setting_errors

pytestmark = pytest.mark.unit


def test_onnx_int8_is_the_default_and_each_backend_builds_its_embedder(tmp_path):
    assert MatcherSettings().embedder == "onnx-int8"
    built = {backend: build_embedder(backend, batch_size=8, model_dir=tmp_path) for backend in BACKENDS}

    assert isinstance(built["torch"], SentenceEmbedder)
    assert isinstance(built["onnx"], OnnxEmbedder) and built["onnx"].precision == "fp32"
    assert isinstance(built["onnx-int8"], OnnxEmbedder) and built["onnx-int8"].precision == "int8"
    assert not any(embedder.loaded for embedder in built.values()), "nothing loads until started"
    for embedder in built.values():
        embedder.close()


def test_a_backend_it_does_not_know_is_a_settings_error_naming_the_choices():
    with pytest.raises(ValidationError) as raised:
        MatcherSettings(embedder="tensorflow")

    assert setting_errors(MatcherSettings, raised.value) == [
        "MATCHER_EMBEDDER='tensorflow': Input should be 'torch', 'onnx' or 'onnx-int8'"
    ]


def test_every_backend_and_sequence_length_keys_its_own_cached_vectors(tmp_path):
    names = [
        build_embedder(backend, batch_size=8, model_dir=tmp_path, max_seq_length=length).name
        for backend in BACKENDS
        for length in (None, 128)
    ]

    assert len(set(names)) == len(names) == 6
    assert len({text_key(name, "lager") for name in names}) == 6
    # The model's own length is its default: vectors cached before the setting existed still count.
    assert build_embedder("torch", batch_size=8, model_dir=tmp_path, max_seq_length=256).name == "all-MiniLM-L6-v2"
