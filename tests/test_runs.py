"""Run folders: naming, the runs folder, reuse of a finished run, and folder claims."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest
from pydantic import Field

from cdlm.config import (
    NOT_HASHED,
    CdlmConfig,
    LLMConfig,
    Section,
    ServeConfig,
    TrainConfig,
    check_lifetimes,
    load_config,
)
from cdlm.errors import ConfigError
from cdlm.runs import (
    RUNS_ENV,
    claim,
    config_hash,
    default_out_dir,
    finished_run,
    run_folders,
    saved_config,
    training_view,
)

REPO = Path(__file__).resolve().parents[1]


def _finish(folder: Path, config) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"config": config.model_dump(mode="json")}))
    (folder / "scores.json").write_text("{}")


def test_default_folder_name_and_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(None, {"train.target": "politics", "train.seed": 3})
    monkeypatch.setenv(RUNS_ENV, str(tmp_path / "env"))
    assert default_out_dir(cfg) == tmp_path / "env" / "politics__default__seed3"
    assert default_out_dir(cfg, tmp_path) == tmp_path / "politics__default__seed3"
    monkeypatch.delenv(RUNS_ENV)
    assert default_out_dir(cfg) == Path("runs") / "politics__default__seed3"
    with pytest.raises(ConfigError, match="no target domain"):
        default_out_dir(load_config())


def test_training_view_ignores_what_does_not_shape_the_model() -> None:
    base = load_config(None, {"train.target": "politics"})
    same = load_config(
        None, {"train.target": "politics", "llm.backend": "llama", "train.threads": 1}
    )
    other = load_config(None, {"train.target": "politics", "train.lr": 3e-4})
    assert training_view(base) == training_view(same)
    assert config_hash(base) == config_hash(same) != config_hash(other)
    assert training_view(base.model_dump(mode="json")) == training_view(base)


@pytest.mark.parametrize(
    ("section", "off", "on"),
    [
        ("causal", {"causal.l_ctx": 0.7}, {"causal.explicit": True}),
        ("fusion", {"fusion.l_gm": 0.0}, {"fusion.enabled": True}),
        ("augment", {"augment.grid": [[4, 0]]}, {"augment.method": "factmix"}),
    ],
)
def test_a_module_that_is_off_shapes_nothing(section: str, off: dict, on: dict) -> None:
    """A module's settings count only when it is on, and a variant's name never does: a plain
    run stays the same run whatever the defaults of the modules it does not use."""
    base = load_config(None, {"train.target": "politics"})
    renamed = load_config(None, {"train.target": "politics", "train.variant": "ep20", **off})
    assert config_hash(base) == config_hash(renamed)
    assert section not in training_view(base)
    with_module = load_config(None, {"train.target": "politics", **on})
    changed = load_config(None, {"train.target": "politics", **on, **off})
    assert section in training_view(with_module)
    assert config_hash(with_module) != config_hash(changed)


def test_finished_run_needs_scores_and_the_same_config(tmp_path: Path) -> None:
    cfg = load_config(None, {"train.target": "politics"})
    default, hashed = run_folders(tmp_path, cfg)
    assert finished_run(tmp_path, cfg) is None
    other = load_config(None, {"train.target": "politics", "train.lr": 3e-4})
    _finish(default, other)  # the default folder holds another config's run
    assert finished_run(tmp_path, cfg) is None
    assert finished_run(tmp_path, other) == default
    _finish(hashed, cfg)
    assert finished_run(tmp_path, cfg) == hashed
    (hashed / "scores.json").unlink()  # unfinished: training writes scores.json last
    assert finished_run(tmp_path, cfg) is None


class Knobs(Section):
    """A runtime section cdlm does not have (yet)."""

    lifetime = "runtime"
    level: int = 1


class TrainPlus(TrainConfig):
    """The training section with a new field that does not shape the weights."""

    poll_ms: int = Field(5, json_schema_extra=NOT_HASHED)


class Extended(CdlmConfig):
    knobs: Knobs = Knobs()
    train: TrainPlus = TrainPlus()


class Width(Section):
    """A model section cdlm does not have."""

    lifetime = "model"
    width: int = 4


class Wider(CdlmConfig):
    width: Width = Width()


def test_a_new_runtime_section_or_field_cannot_change_a_run_hash() -> None:
    """Run hashes follow the lifetimes declared on the sections and fields, not a list kept
    beside them: a section or field added as runtime (or NOT_HASHED) never moves a hash."""
    check_lifetimes(Extended)
    base = load_config(None, {"train.target": "politics"})
    data = base.model_dump(mode="json")
    extended = Extended.model_validate(
        {**data, "knobs": {"level": 7}, "train": {**data["train"], "poll_ms": 9}}
    )
    assert training_view(extended) == training_view(base)
    assert config_hash(extended) == config_hash(base)
    # The view reads the config's own sections: a new model section does count.
    assert config_hash(Wider.model_validate(data)) != config_hash(base)


def test_a_checkpoint_keeps_model_and_training_settings_only(
    names_checkpoint: Path, tmp_path: Path
) -> None:
    """A checkpoint holds no runtime settings (they are the user's when the model is used);
    one saved by an older cdlm with every section loads to the same config and run."""
    from cdlm.model.tagger import Tagger

    tagger = Tagger.load(names_checkpoint)
    tagger.config = load_config(
        None, {"train.target": "politics", "train.lr": 3e-4, "serve.port": 9000, "llm.model": "x"}
    )
    new = tagger.save(tmp_path / "new")
    meta = json.loads((new / "config.json").read_text(encoding="utf-8"))
    assert set(meta["config"]) == set(CdlmConfig.section_names("model", "training"))
    loaded = Tagger.load(new).config
    assert loaded.train.lr == 3e-4 and loaded.serve == ServeConfig() and loaded.llm == LLMConfig()
    assert saved_config(new) == training_view(tagger.config)
    old = Path(shutil.copytree(new, tmp_path / "old"))
    meta["config"] = tagger.config.model_dump(mode="json")
    meta["config"]["serve"]["retired_knob"] = 1  # a runtime field this cdlm does not know
    (old / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    assert Tagger.load(old).config == loaded
    assert saved_config(old) == training_view(tagger.config)


def _ledger_check():
    """``evals/check_ledger_hashes.py``'s :func:`check` on the committed ledgers."""
    path = REPO / "evals" / "check_ledger_hashes.py"
    spec = importlib.util.spec_from_file_location("check_ledger_hashes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check(REPO)


def test_every_committed_ledger_record_keeps_its_hash() -> None:
    """Every run recorded in a committed suite ledger hashes today as when it was recorded:
    a config change that moved one would make the suite train it again."""
    result = _ledger_check()
    assert result.checked >= 130  # crossner_final's ledger at least
    assert result.changed == []
    assert result.unchecked == []


def test_claim_is_exclusive_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    lock = claim(folder)
    assert lock is not None and lock.read_text() == str(os.getpid())
    assert claim(folder) is None  # held by a live process (this one)
    lock.write_text("999999999")  # no such process: stale
    assert claim(folder) == lock
    lock.unlink()


def test_an_empty_lock_is_held_until_its_grace_period_ends(tmp_path: Path) -> None:
    """A lock file without a pid yet (its writer between create and write) is never stale at
    once; only one older than the grace period is."""
    folder = tmp_path / "run"
    lock = folder.with_name("run.lock")
    lock.write_text("")
    assert claim(folder) is None
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert claim(folder, grace_s=60.0) == lock
    assert lock.read_text() == str(os.getpid())


def _race(folder: str, start, done, won) -> None:
    start.wait()
    won.put(claim(Path(folder)) is not None)
    done.wait()  # hold the lock (a live pid) until every racer has tried


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_processes_take_a_lock_exactly_once(tmp_path: Path, stale: bool) -> None:
    ctx = multiprocessing.get_context("fork")
    racers, rounds = 6, 8
    for round_ in range(rounds):
        folder = tmp_path / f"run{round_}"
        if stale:
            folder.with_name(folder.name + ".lock").write_text("999999999")
        start, done, won = ctx.Barrier(racers), ctx.Barrier(racers), ctx.Queue()
        procs = [
            ctx.Process(target=_race, args=(str(folder), start, done, won)) for _ in range(racers)
        ]
        for p in procs:
            p.start()
        results = [won.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert sum(results) == 1, f"round {round_}: {sum(results)} processes took the lock"


def test_claim_without_hard_links_still_works(tmp_path: Path, monkeypatch) -> None:
    def no_links(src, dst):
        raise PermissionError("operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    folder = tmp_path / "run"
    lock = claim(folder)
    assert lock is not None and lock.read_text() == str(os.getpid())
    assert claim(folder) is None
    assert [p.name for p in tmp_path.iterdir()] == ["run.lock"]  # no temporary file left
