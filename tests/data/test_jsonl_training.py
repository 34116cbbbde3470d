"""Training, evaluation and ``cdlm data check`` read a folder of span JSONL splits directly, and
see exactly what they see in its BIO twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdlm.data.formats import write_sentences
from cdlm.data.registry import SPLITS, load_split


@pytest.fixture(scope="module")
def jsonl_politics(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_crossner``'s politics folder as train/dev/test.jsonl."""
    folder = tmp_path_factory.mktemp("jsonl") / "politics-jsonl"
    for split in SPLITS:
        write_sentences(folder / f"{split}.jsonl", load_split("politics", split, small_crossner))
    return folder


def test_eval_on_jsonl_equals_eval_on_bio(
    tiny_checkpoint: Path, small_crossner: Path, jsonl_politics: Path
) -> None:
    from cdlm.experiments.evaluate import evaluate_checkpoint

    bio = evaluate_checkpoint(tiny_checkpoint, "test", data_dir=small_crossner)
    jsonl = evaluate_checkpoint(tiny_checkpoint, "test", domain=str(jsonl_politics))
    assert jsonl.domain == "politics-jsonl"
    assert jsonl.scores == bio.scores and jsonl.confusion == bio.confusion
    assert jsonl.sentences == bio.sentences > 0


def test_train_on_a_jsonl_folder(
    jsonl_politics: Path, small_crossner: Path, tmp_path: Path
) -> None:
    from cdlm.config import load_config
    from cdlm.data.registry import domain_labels
    from cdlm.experiments.train import train
    from cdlm.model.tagger import Tagger

    config = load_config(
        None,
        {
            "train.target": str(jsonl_politics),
            "train.source_epochs": 0,
            "train.target_epochs": 1,
            "train.batch_size": 8,
            "train.max_train_sentences": 16,
            "train.threads": 1,
        },
    )
    out = tmp_path / "run"
    result = train(config, out, runs=tmp_path / "runs", progress=False)
    assert result.target == "politics-jsonl" and len(result.history) == 1
    dev = load_split("politics", "dev", small_crossner)
    assert result.dev.sentences == len(dev)
    assert result.test is not None and result.test.sentences == len(
        load_split("politics", "test", small_crossner)
    )
    # The label set comes from the spans and equals the BIO twin's.
    labels = domain_labels(str(jsonl_politics))
    assert labels == domain_labels("politics", small_crossner)
    assert Tagger.load(out).labels == labels


def test_data_check_on_jsonl(small_crossner: Path, jsonl_politics: Path, tmp_path: Path) -> None:
    from cdlm.cli import data as data_cli

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    data_cli.register(app)
    runner = CliRunner()
    bio_path = small_crossner / "politics" / "dev.txt"
    jsonl_path = jsonl_politics / "dev.jsonl"
    bio = runner.invoke(app, ["data", "check", str(bio_path)], env={"COLUMNS": "200"})
    res = runner.invoke(app, ["data", "check", str(jsonl_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.replace(str(jsonl_path), "F") == bio.output.replace(str(bio_path), "F")
    assert ": OK, " in res.output
    repair = runner.invoke(app, ["data", "check", str(jsonl_path), "--repair"])
    assert "--repair applies to BIO files only" in str(repair.exception)
    stats = runner.invoke(app, ["data", "stats", str(jsonl_politics)], env={"COLUMNS": "200"})
    assert stats.exit_code == 0 and "politics-jsonl" in stats.output
