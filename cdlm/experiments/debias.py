"""Choosing the debiasing strength ``causal.alpha`` on dev (docs/DESIGN.md, "Causal module").

``z = z_full - alpha * centred log p_type(z(x_ent))`` (the entity-only input view, see
:mod:`cdlm.model.causal`) is on for variants with the explicit counterfactual; alpha is a
model-selection choice, so it is picked by strict span F1 on the **dev** split only, from the
grid ``causal.alpha_grid``; ties go to the smaller alpha (0 = no debiasing wins unless debiasing
strictly helps). The test split is never looked at here. ``cdlm tune-alpha`` runs it on a
checkpoint, writes the sweep to ``evals/results/alpha__<domain>__<variant>__seed<N>.json`` and,
with ``--write``, stores the chosen alpha in the checkpoint so ``cdlm eval`` uses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cdlm.data.bio import Sentence
from cdlm.errors import ConfigError
from cdlm.metrics import SpanScores
from cdlm.results import RESULTS_DIR, write_json, write_results

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


class AlphaPoint(BaseModel):
    alpha: float
    dev_f1: float
    dev_precision: float
    dev_recall: float


class AlphaSweep(BaseModel):
    domain: str
    variant: str
    seed: int
    checkpoint: str
    best_alpha: float
    sweep: list[AlphaPoint]
    written: bool
    provenance: dict[str, Any]


def sweep_alpha(
    model: Tagger, dev: Sequence[Sentence], grid: Sequence[float]
) -> tuple[float, list[AlphaPoint], SpanScores]:
    """Dev F1 for every alpha of ``grid``; returns (best alpha, points, dev scores at it).
    Leaves the model's alpha at the best value."""
    from cdlm.experiments.evaluate import score_model

    causal = model.causal
    if causal is None or not causal.config.explicit:
        raise ConfigError("causal.alpha: the checkpoint has no explicit counterfactual to debias")
    points: list[AlphaPoint] = []
    all_scores: dict[float, SpanScores] = {}
    for alpha in sorted(set(grid)):
        causal.config.alpha = alpha
        scores, _, _ = score_model(model, dev)
        all_scores[alpha] = scores
        points.append(
            AlphaPoint(
                alpha=alpha,
                dev_f1=scores.f1,
                dev_precision=scores.precision,
                dev_recall=scores.recall,
            )
        )
    best = max(points, key=lambda p: (p.dev_f1, -p.alpha))
    causal.config.alpha = best.alpha
    model.config.causal.alpha = best.alpha
    return best.alpha, points, all_scores[best.alpha]


def write_alpha(checkpoint: Path, alpha: float) -> None:
    """Store ``alpha`` in the checkpoint's ``config.json`` (nothing else changes)."""
    meta_file = Path(checkpoint) / "config.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta["config"]["causal"]["alpha"] = alpha
    write_json(meta_file, meta)


def write_sweep(result: AlphaSweep, results_dir: Path = RESULTS_DIR) -> Path:
    name = f"alpha__{result.domain}__{result.variant}__seed{result.seed}.json"
    return write_results(Path(results_dir) / name, result)
