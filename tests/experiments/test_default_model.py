"""The default-model recipe on a tiny scale: what the build writes, that the same recipe is
skipped, and what happens without data. (The real build takes minutes; it is not run here.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cdlm.config import load_config
from cdlm.experiments.default_model import (
    RECIPE_FILE,
    build_default,
    data_files,
    is_built,
    recipe_hash,
)


def test_build_writes_model_scores_and_results(tiny_bundle: Path) -> None:
    meta = json.loads((tiny_bundle / "config.json").read_text())
    assert meta["format"] == 2 and meta["default"] == "news"
    assert {name: h["data"] for name, h in meta["heads"].items()} == {
        "news": "conll2003",
        "politics": "politics",
    }
    scores = json.loads((tiny_bundle / "scores.json").read_text())
    assert [h["domain"] for h in scores["heads"]] == ["news", "politics"]
    for head in scores["heads"]:
        assert head["dev"]["sentences"] > 0 and head["test"]["sentences"] > 0
    assert scores["best_epoch"] == 1 and len(scores["history"]) == 1
    assert set(scores["history"][0]["dev_f1"]) == {"news", "politics"}
    assert scores["provenance"]["commit"] and scores["provenance"]["seed"] == 1
    results = tiny_bundle.parent / "results" / "default_model.json"
    record = json.loads(results.read_text())
    assert record["heads"] == scores["heads"] and record["recipe"] == scores["recipe"]
    assert record["provenance"]["config"]["default_model"]["epochs"] == 1
    assert record["provenance"]["command"]
    md = results.with_suffix(".md").read_text()
    assert "| news | conll2003 |" in md and "| politics | politics |" in md
    assert not (tiny_bundle.parent / "model.tmp").exists()


def test_same_recipe_is_skipped(
    tiny_bundle: Path, tiny_bundle_config: dict, small_crossner: Path
) -> None:
    weights = tiny_bundle / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = build_default(
        load_config(None, tiny_bundle_config),
        tiny_bundle,
        data_dir=small_crossner,
        results_dir=None,
        progress=False,
    )
    assert again.skipped and again.path == str(tiny_bundle)
    assert weights.stat().st_mtime_ns == before


def test_recipe_hash_follows_recipe_config_and_data(
    tiny_bundle_config: dict, small_crossner: Path, tmp_path: Path
) -> None:
    tiny = tiny_bundle_config
    cfg = load_config(None, tiny)
    base = recipe_hash(cfg, data_files(cfg, small_crossner))
    assert base == recipe_hash(cfg, data_files(cfg, small_crossner))
    more = load_config(None, {**tiny, "default_model.epochs": 2})
    assert recipe_hash(more, data_files(more, small_crossner)) != base
    lr = load_config(None, {**tiny, "train.lr": 3e-4})
    assert recipe_hash(lr, data_files(lr, small_crossner)) != base
    threads = load_config(None, {**tiny, "train.threads": 2})  # does not shape the model
    assert recipe_hash(threads, data_files(threads, small_crossner)) == base
    # the joint heads start from label semantics: how they start shapes the model
    init = load_config(None, {**tiny, "tagger.label_init": "random"})
    assert recipe_hash(init, data_files(init, small_crossner)) != base
    edited = tmp_path / "data"
    shutil.copytree(small_crossner, edited)
    dev = edited / "politics" / "dev.txt"
    dev.write_text(dev.read_text(encoding="utf-8").replace("\tO\n", "\tB-misc\n", 1))
    assert recipe_hash(cfg, data_files(cfg, edited)) != base


def test_no_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cdlm.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["model", "build-default", "--data-dir", str(empty), "--output", str(tmp_path / "m")]
    with pytest.raises(SystemExit) as caught:
        main(args)
    _, err = capsys.readouterr()
    assert caught.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: ") and "cdlm data download crossner" in err
    with pytest.raises(SystemExit) as caught:
        main([*args, "--skip-without-data"])
    _, err = capsys.readouterr()
    assert caught.value.code == 0 and err.count("\n") == 1
    assert err.startswith("default model not built: ") and "cdlm model build-default" in err
    assert not (tmp_path / "m").exists()


def test_a_model_is_built_when_its_saved_recipe_means_the_same_today(
    tiny_bundle_config: dict, small_crossner: Path, tmp_path: Path
) -> None:
    """An older hash whose saved config hashes to today's recipe (a default changed only in a
    module the model does not use) is built; a config that trains differently is not."""
    cfg = load_config(None, tiny_bundle_config)
    files = data_files(cfg, small_crossner)
    key = recipe_hash(cfg, files)
    out = tmp_path / "m"
    out.mkdir()

    def saved(config: dict, recipe: str = "0123456789abcdef") -> None:
        (out / RECIPE_FILE).write_text(json.dumps({"recipe": recipe, "config": config}), "utf-8")

    unused = load_config(None, {**tiny_bundle_config, "causal.l_ctx": 0.7})
    saved(unused.model_dump(mode="json"))
    assert not is_built(out, key, files), "no weights yet"
    (out / "model.safetensors").write_bytes(b"")
    assert is_built(out, key, files)
    other = load_config(None, {**tiny_bundle_config, "train.lr": 3e-4})
    saved(other.model_dump(mode="json"))
    assert not is_built(out, key, files)
    saved(other.model_dump(mode="json"), recipe=key)
    assert is_built(out, key, files)
    saved({"train": {"lr": "fast"}})
    assert not is_built(out, key, files)


def _finished_tmp(parent: Path) -> Path:
    tmp = parent / ".model.tmp"
    tmp.mkdir()
    (tmp / "config.json").write_text("{}")
    (tmp / "model.safetensors").write_bytes(b"new")
    return tmp


def test_a_folder_of_user_files_is_never_replaced(tmp_path: Path, cdlm_cli) -> None:
    """``-o DIR`` naming a folder that is neither a cdlm model nor empty: one line naming DIR,
    exit 2, and every file in it intact."""
    from cdlm.errors import ConfigError
    from cdlm.experiments.default_model import install_model

    out = tmp_path / "thesis"
    (out / "chapters").mkdir(parents=True)
    (out / "chapters" / "one.tex").write_text("my work")
    tmp = _finished_tmp(tmp_path)
    with pytest.raises(ConfigError) as info:
        install_model(tmp, out)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert (out / "chapters" / "one.tex").read_text() == "my work"
    done = cdlm_cli("model", "build-default", "-o", str(out), "--threads", "1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(out) in done.stderr
    assert (out / "chapters" / "one.tex").read_text() == "my work"


@pytest.mark.parametrize("old", ["missing", "empty", "model"])
def test_a_model_or_empty_folder_is_replaced(tmp_path: Path, old: str) -> None:
    from cdlm.experiments.default_model import install_model

    out = tmp_path / "default"
    if old != "missing":
        out.mkdir()
    if old == "model":
        (out / "config.json").write_text('{"format": 2}')
        (out / "model.safetensors").write_bytes(b"old")
        (out / "scores.json").write_text("{}")
    install_model(_finished_tmp(tmp_path), out)
    assert (out / "model.safetensors").read_bytes() == b"new"
    assert not (out / "scores.json").exists()


def test_the_command_writes_its_scores_into_the_model_folder(
    small_crossner: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdlm model build-default` leaves the checkout's committed
    evals/results as they are: its scores go into the model folder unless told otherwise."""
    from cdlm.cli import main

    committed = Path(__file__).resolve().parents[2] / "evals" / "results" / "default_model.json"
    before = committed.read_bytes()
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[train]\nsource_epochs = 0\nmax_train_sentences = 8\nbatch_size = 8\nthreads = 1\n"
        '[default_model]\nepochs = 1\ndev_sentences = 4\ndomains = { news = "conll2003" }\n'
        'default = "news"\n',
        encoding="utf-8",
    )
    out = tmp_path / "model"
    args = ["model", "build-default", "--config", str(config), "--data-dir", str(small_crossner)]
    with pytest.raises(SystemExit) as caught:
        main([*args, "--output", str(out), "--runs-dir", str(tmp_path / "runs")])
    _, err = capsys.readouterr()
    assert caught.value.code == 0, err
    assert (out / "results" / "default_model.json").is_file()
    assert (out / "results" / "default_model.md").is_file()
    assert committed.read_bytes() == before
