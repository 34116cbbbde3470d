"""The default model shipped in the package (``cdlm/shipped/default``): its recipe is today's,
it was built from the data this machine has, its weights fit the wheel's budget, and the packed
weights scored within tolerance of the built model. A failure here means recipe and weights
drifted apart: the message says how to rebuild and re-ship."""

from __future__ import annotations

import json
from pathlib import Path

from cdlm.config import load_config
from cdlm.experiments.default_model import data_digests, data_files, recipe_hash_of
from cdlm.model.packing import PACKED, packing_of

BUDGET_BYTES = 50 * 1024 * 1024  # the wheel's size budget for shipped weights
RESHIP = (
    "rebuild it with `cdlm model build-default --force`, then ship it with `cdlm model ship "
    "--from <cdlm home>/models/default-build` and commit cdlm/shipped/default and "
    "evals/results/default_model*.{json,md} (README, 'Shipping a new default model')"
)


def _recipe(folder: Path) -> dict:
    return json.loads((folder / "recipe.json").read_text(encoding="utf-8"))


def test_the_shipped_recipe_is_todays(default_model_dir: Path) -> None:
    shipped = _recipe(default_model_dir)
    today = recipe_hash_of(load_config(None), shipped["data"])
    assert today == shipped["recipe"], (
        f"the default model's recipe changed since it was shipped (shipped {shipped['recipe']}, "
        f"today {today}): {RESHIP}"
    )


def test_the_shipped_model_was_built_from_this_data(
    default_model_dir: Path, crossner_dir: Path
) -> None:
    shipped = _recipe(default_model_dir)["data"]
    here = data_digests(data_files(load_config(None), crossner_dir))
    changed = sorted(k for k in shipped.keys() | here.keys() if shipped.get(k) != here.get(k))
    assert not changed, f"data files differ from the shipped model's: {changed}; {RESHIP}"


def test_the_shipped_weights_fit_the_budget_and_the_built_scores(default_model_dir: Path) -> None:
    weights = default_model_dir / "model.safetensors"
    assert packing_of(weights) == PACKED
    assert weights.stat().st_size <= BUDGET_BYTES
    scores = json.loads((default_model_dir / "scores.json").read_text(encoding="utf-8"))
    record = scores["shipped"]
    assert record["recipe"] == _recipe(default_model_dir)["recipe"] == scores["recipe"]
    heads = {(h["domain"], h["split"]) for h in record["heads"]}
    assert heads == {(h["domain"], s) for h in scores["heads"] for s in ("dev", "test")}
    assert all(abs(h["delta"]) <= record["tolerance"] for h in record["heads"])
