"""`cdlm model ship` on the tiny two-head model: what it writes, what it refuses, and what a
build says about the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.config import load_config
from cdlm.errors import ConfigError
from cdlm.experiments.default_model import build_default, data_files, recipe_hash_of
from cdlm.experiments.ship import HeadDelta, check_deltas, compare_with_shipped, ship
from cdlm.model.packing import PACKED, packing_of


@pytest.fixture(scope="module")
def shipped(
    tiny_bundle: Path, tiny_bundle_config: dict, small_crossner: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:  # fmt: skip
    """(the shipped folder, the results folder) of shipping ``tiny_bundle``."""
    root = tmp_path_factory.mktemp("ship")
    # The tiny model's handful of test spans make its F1 move by whole points; the tolerance
    # does not shape the recipe, so the model still ships under its own hash.
    cfg = load_config(None, {**tiny_bundle_config, "default_model.ship_tolerance": 100.0})
    ship(cfg, tiny_bundle, root / "shipped", data_dir=small_crossner, results_dir=root / "res")
    return root / "shipped", root / "res"


def test_ship_packs_and_records_the_recipe_with_its_data(
    shipped: tuple[Path, Path], tiny_bundle: Path, tiny_bundle_config: dict, small_crossner: Path
) -> None:
    out, results = shipped
    assert packing_of(out / "model.safetensors") == PACKED
    assert (out / "encoder" / "tokenizer.json").is_file() and (out / "config.json").is_file()
    recipe = json.loads((out / "recipe.json").read_text())
    cfg = load_config(None, tiny_bundle_config)
    assert set(recipe["data"]) == set(data_files(cfg, small_crossner))
    # the recorded digests alone give the recipe hash: checkable without the data
    assert recipe_hash_of(cfg, recipe["data"]) == recipe["recipe"]
    scores = json.loads((out / "scores.json").read_text())
    built = json.loads((tiny_bundle / "scores.json").read_text())
    assert scores["heads"] == built["heads"]
    deltas = scores["shipped"]["heads"]
    assert {(h["domain"], h["split"]) for h in deltas} == {
        (d, s) for d in ("news", "politics") for s in ("dev", "test")
    }
    record = json.loads((results / "default_model_shipped.json").read_text())
    assert record["recipe"] == recipe["recipe"] and record["provenance"]["command"]
    assert "| politics | test |" in (results / "default_model_shipped.md").read_text()


def test_ship_refuses_a_model_of_another_recipe(
    tiny_bundle: Path, tiny_bundle_config: dict, small_crossner: Path, tmp_path: Path
) -> None:
    other = load_config(None, {**tiny_bundle_config, "train.lr": 3e-4})
    with pytest.raises(ConfigError, match="rebuild it with `cdlm model build-default --force`"):
        ship(other, tiny_bundle, tmp_path / "out", data_dir=small_crossner, results_dir=None)
    assert not (tmp_path / "out").exists()


def test_a_head_that_moves_too_far_is_named() -> None:
    heads = [
        HeadDelta(domain="news", split="dev", built_f1=90.0, shipped_f1=90.1, delta=0.1),
        HeadDelta(domain="ai", split="test", built_f1=60.0, shipped_f1=59.7, delta=-0.3),
    ]
    check_deltas(heads, 0.3)
    with pytest.raises(ConfigError, match=r"\(ai test -0\.30\); nothing shipped"):
        check_deltas(heads, 0.2)


def test_a_build_says_whether_it_matches_the_shipped_model(
    shipped: tuple[Path, Path], tiny_bundle: Path, tiny_bundle_config: dict, small_crossner: Path
) -> None:
    out, _ = shipped
    # A build skipped as up to date still compares, from the scores it recorded.
    cfg = load_config(None, tiny_bundle_config)
    built = build_default(cfg, tiny_bundle, data_dir=small_crossner, results_dir=None)
    assert built.skipped and [h.domain for h in built.heads] == ["news", "politics"]
    assert compare_with_shipped(built, 0.2, out).startswith("matches the shipped model's build")
    worse = built.model_copy(deep=True)
    worse.heads[1].test.f1 -= 0.01  # one point lower on politics test
    line = compare_with_shipped(worse, 0.2, out)
    assert line.startswith("does not match") and "politics test" in line
    other = built.model_copy(update={"recipe": "0123456789abcdef"})
    assert "differs from the shipped model's" in compare_with_shipped(other, 0.2, out)
