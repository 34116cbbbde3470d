"""A short real training run on a few CrossNER sentences: source pre-training (cached), target
fine-tuning, checkpoint + scores, determinism for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.config import load_config
from cdlm.errors import ConfigError
from cdlm.experiments.train import train
from cdlm.model.tagger import Tagger


def _config(**extra):
    return load_config(
        None,
        {
            "train.target": "politics",
            "train.max_train_sentences": 16,
            "train.threads": 1,
            "train.source_epochs": 1,
            "train.target_epochs": 3,
            "train.batch_size": 8,
            "train.patience": 3,
            **extra,
        },
    )


def test_source_then_target_training(small_crossner: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = train(_config(), tmp_path / "a", data_dir=small_crossner, runs=runs, progress=False)

    # the source model was trained and cached under runs/source/
    assert not first.source_cached and first.source_seconds > 0
    source_dir = Path(first.source_checkpoint)
    assert source_dir.parent == runs / "source" and (source_dir / "model.safetensors").is_file()
    assert Tagger.read_meta(source_dir)["labels"][1:3] == ["B-location", "I-location"]

    # the target run learnt something and kept its best epoch
    losses = [e.train_loss for e in first.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert first.best_epoch == max(first.history, key=lambda e: e.dev_f1).epoch
    out = tmp_path / "a"
    for name in ("model.safetensors", "config.json", "scores.json", "encoder/tokenizer.json"):
        assert (out / name).is_file(), name
    scores = json.loads((out / "scores.json").read_text())
    assert scores["dev"]["f1"] == first.dev.f1 and scores["test"]["sentences"] > 0
    assert scores["provenance"]["config"]["train"]["seed"] == 1
    assert Tagger.read_meta(out)["labels"] == Tagger.load(out).labels

    # same config again: the source comes from the cache, and training is deterministic
    second = train(_config(), tmp_path / "b", data_dir=small_crossner, runs=runs, progress=False)
    assert second.source_cached and second.source_checkpoint == first.source_checkpoint
    assert [e.train_loss for e in second.history] == losses
    assert second.dev == first.dev


def test_missing_target_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.target"):
        train(load_config(None, {}), tmp_path)


@pytest.mark.parametrize(
    ("args", "method", "fusion", "variant"),
    [
        (["--variant", "baseline+factmix"], "factmix", False, "baseline+factmix"),
        (["--variant", "full+factmix"], "factmix", True, "full+factmix"),
        (["--variant", "gcn", "--augment", "factmix"], "factmix", True, "gcn+factmix"),
        (["--variant", "gcn"], "none", True, "gcn"),
    ],
)
def test_cli_variant_is_not_undone_by_unset_flags(monkeypatch, args, method, fusion, variant):
    """`cdlm train --variant X` hands training X's settings; a flag left unset (here
    ``--augment``) must not reset what the variant switched on."""
    import typer
    from typer.testing import CliRunner

    import cdlm.experiments.train
    from cdlm.cli import run as run_cli

    seen = []

    def capture(cfg, out, **_):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(cdlm.experiments.train, "train", capture)
    app = typer.Typer()
    run_cli.register(app)
    res = CliRunner().invoke(app, ["train", "--target", "politics", *args])
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert cfg.augment.method == method
    assert cfg.fusion.enabled is fusion
    assert cfg.train.variant == variant
