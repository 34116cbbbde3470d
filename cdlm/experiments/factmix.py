"""``cdlm train --augment factmix``: FactMix between source pre-training and the final target
fine-tuning.

Order (FactMix's, on top of cdlm's pre-train-then-fine-tune protocol):

1. After source pre-training, fine-tune once on the ORIGINAL target train set (or reuse the
   finished run of the twin variant without FactMix, e.g. ``baseline`` for ``baseline+factmix``,
   which is that same fine-tuning: :func:`twin_filter`). This tagger is the denoising filter:
   it knows the target types (the source tagger does not: a filter built on CoNLL labels
   would reject every sentence holding a politician or an election), and it is what "the
   tagger trained on the original data" means in the paper. ``augment.filter = false`` skips
   this fine-tuning and keeps every semi-fact.
2. Generate both kinds once at the largest ratios of ``augment.grid`` and filter them.
3. For every ``(r_e, r_c)`` in the grid, fine-tune from the same source model on the originals
   plus that prefix of the semi-facts; the point with the best target dev F1 is the result
   (:func:`cdlm.augment.mix.grid_search`), and every point's dev F1 is recorded.

Cost: ``1 + len(grid)`` target fine-tunings (one fewer without the filter), each on a larger set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence

# fine_tune(train sentences) -> (model, best epoch, dev scores, history): the training loop of
# cdlm.experiments.train.
FineTune = Callable[[Sequence[Sentence]], tuple[Any, int, Any, list]]


def twin_filter(config: CdlmConfig, runs: Any = None) -> tuple[Any, str | None, float | None]:
    """(tagger, folder, dev F1) of the finished run of this config without FactMix, or Nones.

    Its training is exactly the filter's fine-tuning (same source model, seed and settings), so
    a suite that also runs the twin variant trains it once instead of twice."""
    import json

    from cdlm.model.tagger import Tagger
    from cdlm.runs import finished_run, runs_dir

    twin = config.model_copy(deep=True)
    twin.augment.method = "none"
    # "baseline+factmix" and its tuning twins ("baseline+factmix-e4c2") filter with "baseline".
    twin.train.variant = twin.train.variant.split("+factmix")[0]
    folder = finished_run(runs_dir(runs), twin)
    if folder is None:
        return None, None, None
    dev = json.loads((folder / "scores.json").read_text(encoding="utf-8"))["dev"]["f1"]
    return Tagger.load(folder), str(folder), dev


def factmix_fine_tune(
    train_sents: Sequence[Sentence],
    config: CdlmConfig,
    fine_tune: FineTune,
    data_dir: Any = None,
    runs: Any = None,
) -> tuple[tuple[Any, int, Any, list], dict[str, Any]]:
    """The chosen grid point's fine-tuning result and the record for ``scores.json``."""
    from cdlm.augment.mix import grid_search
    from cdlm.augment.pipeline import factmix, make_filler
    from cdlm.data.registry import load_split

    acfg = config.augment
    max_e = max(e for e, _ in acfg.grid)
    max_c = max(c for _, c in acfg.grid)
    gen_cfg = acfg.model_copy(update={"entity_ratio": max_e, "context_ratio": max_c})
    filter_model, filter_dir, filter_dev = None, None, None
    if acfg.filter:
        filter_model, filter_dir, filter_dev = twin_filter(config, runs)
    if acfg.filter and filter_model is None:
        filter_model, _, filter_scores, _ = fine_tune(train_sents)
        filter_dev = filter_scores.f1
    extra = load_split(acfg.extra_base, "train", data_dir) if acfg.extra_base else None
    aug = factmix(
        train_sents,
        gen_cfg,
        filler=make_filler(config) if max_c else None,
        tagger=filter_model,
        extra=extra,
        filter_name="target tagger fine-tuned on the original train set" if filter_model else None,
    )
    del filter_model

    results: dict[tuple[int, int], tuple[Any, int, Any, list]] = {}

    def score(sentences: list[Sentence], ratios: tuple[int, int]) -> float:
        results[ratios] = fine_tune(sentences)
        return results[ratios][2].f1

    grid = grid_search(train_sents, aug.generated, acfg.grid, score)
    chosen = (grid.chosen.entity_ratio, grid.chosen.context_ratio)
    # The chosen point was trained: an equal selection scored earlier would win the tie-break.
    record = {
        "method": "factmix",
        "grid": grid.model_dump(),
        "filter_tagger_dev_f1": filter_dev,
        "filter_checkpoint": filter_dir,  # None: fine-tuned here (no finished twin run)
        "stats": aug.stats.model_dump(),
    }
    return results[chosen], record
