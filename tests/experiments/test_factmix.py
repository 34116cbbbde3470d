"""``cdlm train --augment factmix`` glue: the denoising filter reuses the twin run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cdlm.config import CdlmConfig
from cdlm.experiments.factmix import twin_filter


def _saved_config(checkpoint: Path) -> CdlmConfig:
    meta = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return CdlmConfig.model_validate(meta["config"])


def test_twin_run_is_the_filter(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """``default+factmix`` (``cdlm train --augment factmix``) finds the finished ``default`` run
    of the same config (its training is the filter's fine-tuning) and nothing when any
    training setting differs."""
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(tiny_checkpoint, runs / tiny_checkpoint.name)
    config = _saved_config(tiny_checkpoint)
    config.augment.method = "factmix"
    config.train.variant = "default+factmix"

    tagger, folder, dev = twin_filter(config, runs)
    assert folder == str(runs / tiny_checkpoint.name)
    assert (
        list(tagger.labels) == json.loads((tiny_checkpoint / "config.json").read_text())["labels"]
    )
    assert dev == json.loads((tiny_checkpoint / "scores.json").read_text())["dev"]["f1"]

    other = config.model_copy(deep=True)
    other.train.seed = 2
    assert twin_filter(other, runs) == (None, None, None)
    (runs / tiny_checkpoint.name / "scores.json").unlink()  # unfinished: not a filter
    assert twin_filter(config, runs) == (None, None, None)
