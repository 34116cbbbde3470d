"""Checkpoints: save/load gives the same model; missing or broken ones are one clear error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdlm.errors import ModelNotFoundError
from cdlm.model.tagger import Tagger


def _words(text: str) -> list[str]:
    return text.split()


SENTENCES = [
    _words("The Social Democratic Party won the 2017 Lower Saxony state election ."),
    _words("Merkel met Macron in Paris ."),
]


def test_round_trip_gives_identical_outputs(tiny_tagger: Tagger, tmp_path: Path) -> None:
    tiny_tagger.save(tmp_path / "copy")
    again = Tagger.load(tmp_path / "copy")
    assert again.labels == tiny_tagger.labels
    assert again.config == tiny_tagger.config
    for a, b in zip(
        tiny_tagger.predict_proba(SENTENCES), again.predict_proba(SENTENCES), strict=True
    ):
        assert np.array_equal(a, b)
    meta = json.loads((tmp_path / "copy" / "config.json").read_text())
    assert meta["labels"] == tiny_tagger.labels and meta["domain"] == "politics"
    assert meta["config"]["encoder"]["casing_features"] is True


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="cdlm model build-default"):
        Tagger.load(tmp_path / "nothing-here")


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_config(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = _broken_copy(tiny_checkpoint, tmp_path / "bad")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match=r"config\.json: corrupt checkpoint"):
        Tagger.load(bad)


def test_a_checkpoint_with_retired_config_fields_loads_and_predicts_the_same(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """A checkpoint written by an older cdlm (config fields since removed) still loads; the
    same field in a user's own config file stays an error."""
    from cdlm.config import RETIRED_FIELDS, load_config
    from cdlm.errors import ConfigError

    old = _broken_copy(tiny_checkpoint, tmp_path / "old")
    meta = json.loads((old / "config.json").read_text())
    for dotted in RETIRED_FIELDS:
        section, _, name = dotted.partition(".")
        meta["config"][section][name] = 0.1
    (old / "config.json").write_text(json.dumps(meta))
    again, now = Tagger.load(old), Tagger.load(tiny_checkpoint)
    assert again.config == now.config
    for a, b in zip(again.predict_proba(SENTENCES), now.predict_proba(SENTENCES), strict=True):
        assert np.array_equal(a, b)
    user = tmp_path / "user.toml"
    user.write_text("[causal]\nl_ecf = 0.1\n")
    with pytest.raises(ConfigError, match="l_ecf"):
        load_config(user)


def test_corrupt_or_missing_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = _broken_copy(tiny_checkpoint, tmp_path / "bad")
    (bad / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelNotFoundError, match="corrupt weights"):
        Tagger.load(bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="weights missing"):
        Tagger.load(bad)


def test_cli_missing_checkpoint_is_one_line_exit_2(tmp_path: Path) -> None:
    args = ["predict", "--checkpoint", str(tmp_path / "none"), "some text"]
    proc = subprocess.run(
        [sys.executable, "-m", "cdlm", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no model at"), proc.stderr
    assert "cdlm model build-default" in lines[0] and "cdlm train" in lines[0]
