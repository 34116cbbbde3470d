"""`evaluate_checkpoint` scores a saved tagger; results files carry scores and provenance."""

from __future__ import annotations

import json
from pathlib import Path

from test_provenance import assert_commit_stamp

from cdlm.data.registry import load_split
from cdlm.experiments.evaluate import evaluate_checkpoint, write_results
from cdlm.metrics import span_scores
from cdlm.model.tagger import Tagger


def test_evaluate_and_write(tiny_checkpoint: Path, small_crossner: Path, tmp_path: Path) -> None:
    result = evaluate_checkpoint(tiny_checkpoint, "dev", data_dir=small_crossner)
    sentences = load_split("politics", "dev", small_crossner)
    expected = span_scores(
        [s.tags for s in sentences],
        Tagger.load(tiny_checkpoint).predict_tags([s.tokens for s in sentences]),
    )
    assert result.scores == expected
    assert (result.domain, result.variant, result.split, result.seed) == (
        "politics",
        "default",
        "dev",
        1,
    )
    assert result.sentences == len(sentences) and result.sentences_per_s > 0

    path = write_results(result, tmp_path)
    assert path.name == "politics__default__seed1__dev.json"
    record = json.loads(path.read_text())
    assert record["scores"]["f1"] == expected.f1
    assert record["provenance"]["command"]
    assert_commit_stamp(record["provenance"])
    assert record["config"]["train"]["target"] == "politics"
    md = path.with_suffix(".md").read_text()
    assert "| **micro** |" in md and "politics / default / seed 1 / dev" in md


def test_cli_eval_writes_results(
    tiny_checkpoint: Path, small_crossner: Path, tmp_path: Path
) -> None:
    import typer
    from typer.testing import CliRunner

    from cdlm.cli import run

    app = typer.Typer()
    run.register(app)
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--split",
            "test",
            "--data-dir",
            str(small_crossner),
            "--results-dir",
            str(tmp_path),
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    assert "micro" in res.output
    assert (tmp_path / "politics__default__seed1__test.json").is_file()
