"""Shipping the default model inside the package, and checking a build against it.

``cdlm model ship --from FOLDER`` (:func:`ship`) turns a model that ``cdlm model build-default``
built from today's recipe into ``cdlm/shipped/default``: the same files, with the weights
packed (:mod:`cdlm.model.packing`: int8 embedding rows, fp16 matrices), a ``recipe.json`` that
also holds the SHA-256 of every data file (so a test checks the recipe hash on a machine
without the data) and a ``scores.json`` with the built model's scores and the packed model's,
head by head. Packed weights whose F1 on any head's dev or test split moves more than
``default_model.ship_tolerance`` points are refused and nothing is replaced. The comparison is
written to ``evals/results/default_model_shipped.{json,md}``.

:func:`compare_with_shipped` is what ``build-default`` says after a build: whether it is the
shipped recipe, and each head's F1 against the shipped model's build.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from cdlm.config import CdlmConfig
from cdlm.errors import ConfigError, ModelNotFoundError
from cdlm.experiments.default_model import (
    RECIPE_FILE,
    SCORES_FILE,
    BuildResult,
    HeadScores,
    check_replaceable,
    data_digests,
    data_files,
    load_joint_data,
    provenance,
    recipe_hash_of,
    recorded_heads,
    score_heads,
)
from cdlm.results import RESULTS_DIR, portable, write_json, write_results
from cdlm.runs import shipped_dir

SHIPPED_NAME = "default_model_shipped"
COPIED = ("config.json",)  # copied as they are, with the encoder/ folder


class HeadDelta(BaseModel):
    domain: str
    split: Literal["dev", "test"]
    built_f1: float  # percentage points
    shipped_f1: float
    delta: float  # shipped - built


class ShipResult(BaseModel):
    recipe: str
    built: str  # the folder shipped from (portable)
    weights_bytes: int  # the packed model.safetensors
    built_weights_bytes: int
    tolerance: float
    heads: list[HeadDelta]

    @property
    def worst(self) -> float:
        return max((abs(h.delta) for h in self.heads), default=0.0)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{path}: not readable ({exc}); build the model first") from None
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{path}: not a JSON object")
    return data


def head_deltas(built: list[HeadScores], shipped: list[HeadScores]) -> list[HeadDelta]:
    """Each head's dev and test F1, built against shipped, in points."""
    by_name = {h.domain: h for h in shipped}
    out = []
    for b in built:
        if (s := by_name.get(b.domain)) is None:
            continue
        for split in ("dev", "test"):
            bs, ss = getattr(b, split), getattr(s, split)
            if bs is None or ss is None:
                continue
            built_f1, shipped_f1 = round(100 * bs.f1, 4), round(100 * ss.f1, 4)
            delta = round(shipped_f1 - built_f1, 4)
            out.append(HeadDelta(domain=b.domain, split=split, built_f1=built_f1,
                                 shipped_f1=shipped_f1, delta=delta))  # fmt: skip
    return out


def check_deltas(heads: list[HeadDelta], tolerance: float) -> None:
    """A one-line error naming every head and split whose F1 moved more than ``tolerance``."""
    far = [f"{h.domain} {h.split} {h.delta:+.2f}" for h in heads if abs(h.delta) > tolerance]
    if far:
        raise ConfigError(
            f"packed weights move F1 by more than {tolerance} points ({', '.join(far)}); "
            "nothing shipped"
        )


def ship(
    cfg: CdlmConfig,
    built: Path,
    out: Path | None = None,
    *,
    data_dir: Path | str | None = None,
    results_dir: Path | str | None = RESULTS_DIR,
) -> ShipResult:
    """Pack the model built in ``built`` into ``out`` (default: the package's shipped folder);
    see the module docstring."""
    from cdlm.model.bundle import TaggerBundle
    from cdlm.model.packing import save_packed

    out = out or shipped_dir()
    recipe = read_json(built / RECIPE_FILE)
    scores = read_json(built / SCORES_FILE)
    files = data_files(cfg, data_dir)
    digests = data_digests(files)
    today = recipe_hash_of(cfg, digests)
    if recipe.get("recipe") != today:
        raise ConfigError(
            f"{built}: built from recipe {recipe.get('recipe')}, today's is {today}; rebuild "
            "it with `cdlm model build-default --force` before shipping"
        )
    check_replaceable(out)
    bundle = TaggerBundle.load(built)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.mkdir(parents=True)
    try:
        for name in COPIED:
            shutil.copy(built / name, tmp / name)
        shutil.copytree(built / "encoder", tmp / "encoder")
        save_packed(bundle.state_dict(), tmp / "model.safetensors")
        write_json(tmp / RECIPE_FILE, {**recipe, "data": digests})
        data = load_joint_data(cfg, data_dir)
        built_heads = BuildResult.model_validate(scores).heads
        shipped_heads = score_heads(TaggerBundle.load(tmp), data, data_dir)
        result = ShipResult(
            recipe=today,
            built=portable(str(built)),
            weights_bytes=(tmp / "model.safetensors").stat().st_size,
            built_weights_bytes=(built / "model.safetensors").stat().st_size,
            tolerance=cfg.default_model.ship_tolerance,
            heads=head_deltas(built_heads, shipped_heads),
        )
        check_deltas(result.heads, result.tolerance)
        record = {**scores, "shipped": result.model_dump(mode="json")}
        write_json(tmp / SCORES_FILE, record)
        check_replaceable(out)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if results_dir is not None:
        prov = provenance(cfg)
        write_results(
            Path(results_dir) / f"{SHIPPED_NAME}.json",
            {**result.model_dump(mode="json"), "provenance": prov},
            ship_markdown(result, prov),
        )
    return result


def ship_markdown(result: ShipResult, prov: dict[str, Any]) -> str:
    rows = [
        "| head | split | built F1 | shipped F1 | delta |",
        "|---|---|---:|---:|---:|",
        *(
            f"| {h.domain} | {h.split} | {h.built_f1:.2f} | {h.shipped_f1:.2f} | {h.delta:+.2f} |"
            for h in result.heads
        ),
    ]
    mb = 1024 * 1024
    return "\n".join(
        [
            "# The shipped default model: packed weights against the built fp32 model",
            "",
            f"Weights {result.weights_bytes / mb:.1f} MiB packed (int8 embedding rows, fp16 "
            f"matrices) against "
            f"{result.built_weights_bytes / mb:.1f} MiB built (fp32); largest F1 move "
            f"{result.worst:.2f} points (tolerance {result.tolerance}).",
            "",
            *rows,
            "",
            f"- recipe: `{result.recipe}`; built model: `{result.built}`",
            f"- command: `{prov.get('command', '')}`",
            f"- commit: `{prov.get('commit', '')}`",
            f"- time: {prov.get('time', '')}, {prov.get('machine', '')}",
            "",
        ]
    )


def compare_with_shipped(result: BuildResult, tolerance: float, shipped: Path | None = None) -> str:
    """One line on a fresh build against the shipped model: the same recipe or not, and the
    largest F1 difference from the shipped model's build per head and split."""
    folder = shipped or shipped_dir()
    try:
        recipe = read_json(folder / RECIPE_FILE)
    except ModelNotFoundError:
        return f"no shipped model to compare with ({folder})"
    heads = recorded_heads(folder)
    if recipe.get("recipe") != result.recipe:
        return (
            f"recipe {result.recipe} differs from the shipped model's {recipe.get('recipe')}: "
            "this is another model (ship it with `cdlm model ship`)"
        )
    deltas = head_deltas(heads, result.heads)
    if not deltas:
        return f"same recipe as the shipped model ({result.recipe}); no scores to compare"
    worst = max(deltas, key=lambda d: abs(d.delta))
    verdict = "matches" if abs(worst.delta) <= tolerance else "does not match"
    return (
        f"{verdict} the shipped model's build (recipe {result.recipe}; largest F1 difference "
        f"{worst.delta:+.2f} points, {worst.domain} {worst.split}; tolerance {tolerance})"
    )
