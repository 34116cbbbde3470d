"""Suite runner (cdlm/experiments/suite.py): planning, reuse of finished runs, resume after
interruption.

Reuse is checked against the files the real :func:`cdlm.experiments.train.train` writes (a tiny
run on a few sentences, ``test_reuse_of_a_really_trained_run``); for the ordering, resume and
locking logic ``FakeTrain`` stands in for it and writes the same two files (``config.json`` then
``scores.json``), so those tests run in milliseconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdlm.errors import ConfigError
from cdlm.experiments.suite import (
    SuiteProbe,
    SuiteSpec,
    _grid_lines,
    load_suite,
    planned_runs,
    run_config,
    run_suite,
    select_domains,
    select_variants,
    summarise_suite,
)

REPO = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path) -> SuiteSpec:
    return SuiteSpec(
        name="tiny",
        variants=["baseline", "gcn"],
        domains=["politics", "music"],
        seeds=[1],
        domain_seeds={"politics": [1, 2]},
        runs_dir=str(tmp_path / "runs"),
        results_dir=str(tmp_path / "results"),
        overrides={"train.target_epochs": 1},
    )


class FakeTrain:
    """Writes a finished run; F1 = 0.5 (+0.1 for gcn) + seed/100; can fail on call N."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.fail_on = fail_on

    def __call__(self, config, out_dir, **_):
        t = config.train
        self.calls.append((t.variant, t.target, t.seed))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt  # an interrupted suite
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"format": 1, "config": config.model_dump(mode="json")}
        (out / "config.json").write_text(json.dumps(meta), encoding="utf-8")
        f1 = 0.5 + (0.1 if config.fusion.enabled else 0.0) + t.seed / 100
        score = {"f1": f1, "precision": f1, "recall": f1}
        dev = {"f1": f1 + 0.05, "precision": f1, "recall": f1}  # dev apart from test
        scores = {"dev": dev, "test": score, "best_epoch": 1, "target_seconds": 1.0}
        (out / "scores.json").write_text(json.dumps(scores), encoding="utf-8")


def test_committed_suite_file_parses():
    spec = load_suite(REPO / "evals" / "crossner.toml")
    assert spec.variants[:2] == ["baseline", "gcn"]
    assert len(planned_runs(spec)) == len(spec.variants) * (3 + 4)
    two = select_variants(spec, ["gcn", "baseline"])
    assert two.variants == ["baseline", "gcn"] and len(planned_runs(two)) == 2 * (3 + 4)
    pol = select_domains(two, ["politics"])
    assert pol.domains == ["politics"] and len(planned_runs(pol)) == 2 * 3
    with pytest.raises(ConfigError, match=r"--domains: \['physics'\] not in"):
        select_domains(spec, ["physics"])


def test_runs_then_reuses_everything(tmp_path):
    spec = _spec(tmp_path)
    fake = FakeTrain()
    result = run_suite(spec, train_fn=fake, progress=False, log=lambda _: None)
    assert len(fake.calls) == 6 and result["complete"]
    cell = result["summary"]["per_domain"]["politics"]["gcn"]
    assert cell["n"] == 2
    assert cell["mean"] == pytest.approx(0.615)
    assert cell["std"] == pytest.approx(0.00707107, abs=1e-6)
    assert result["summary"]["delta"]["music"]["gcn"] == pytest.approx(0.1)
    assert result["summary"]["delta"]["average"]["gcn"] == pytest.approx(0.1)
    # Dev F1 per variant, the mean over domains of the per-domain means over seeds.
    assert result["summary"]["dev_average"]["gcn"] == pytest.approx((0.665 + 0.66) / 2)
    md = (tmp_path / "results" / "tiny.md").read_text(encoding="utf-8")
    assert "61.50 ± 0.71 (2)" in md and "+10.00" in md
    assert "| gcn | 66.50 | 66.00 | 66.25 |" in md  # the dev table
    again = FakeTrain()
    result = run_suite(spec, train_fn=again, progress=False, log=lambda _: None)
    assert again.calls == [] and all(r["reused"] for r in result["runs"])


def test_interrupted_suite_resumes(tmp_path):
    spec = _spec(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_suite(spec, train_fn=FakeTrain(fail_on=3), progress=False, log=lambda _: None)
    partial = json.loads((tmp_path / "results" / "tiny.json").read_text(encoding="utf-8"))
    assert not partial["complete"] and len(partial["runs"]) == 2
    # A report of the suite in progress trains nothing and lists the two finished runs.
    report = FakeTrain()
    result = run_suite(spec, train_fn=report, progress=False, log=lambda _: None, train=False)
    assert report.calls == [] and not result["complete"] and len(result["runs"]) == 2
    resumed = FakeTrain()
    result = run_suite(spec, train_fn=resumed, progress=False, log=lambda _: None)
    assert len(resumed.calls) == 4 and result["complete"] and len(result["runs"]) == 6
    assert ("baseline", "politics", 1) not in resumed.calls


def test_reuse_of_a_really_trained_run(tmp_path, small_crossner):
    """Reuse decided on the files the real trainer wrote: the same training config is reused,
    a change that does not shape the model too, any other change trains anew beside it, and a
    run without ``scores.json`` (interrupted) is trained again."""
    spec = SuiteSpec(
        name="real",
        variants=["baseline"],
        domains=["politics"],
        runs_dir=str(tmp_path / "runs"),
        results_dir=str(tmp_path / "results"),
        overrides={
            "train.source_epochs": 0,
            "train.target_epochs": 1,
            "train.max_train_sentences": 8,
            "train.batch_size": 8,
            "train.threads": 1,
        },
        probe=SuiteProbe(variants=["baseline"], limit=4),
    )
    lines: list[str] = []
    quiet = {"data_dir": small_crossner, "progress": False, "log": lines.append}
    first = run_suite(spec, **quiet)  # the real cdlm.experiments.train.train
    folder = tmp_path / "runs" / "politics__baseline__seed1"
    (run,) = first["runs"]
    assert run["checkpoint"] == str(folder) and not run["reused"]
    # The probe ran on the fresh checkpoint, once: its record is kept in the ledger.
    assert run["probe"]["sentences"] == 4 and set(run["probe"]["survival"]) == {"swap", "nonce"}
    assert sum("entity-bias probe" in line for line in lines) == 1
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    assert run["dev_f1"] == scores["dev"]["f1"] and run["test_f1"] == scores["test"]["f1"]
    weights = (folder / "model.safetensors").stat().st_mtime_ns

    def again(changed: dict, probe: SuiteProbe | None = None) -> tuple[FakeTrain, dict]:
        fake = FakeTrain()  # its checkpoints are not real: no probe unless asked
        update = {"overrides": {**spec.overrides, **changed}, "probe": probe}
        return fake, run_suite(spec.model_copy(update=update), train_fn=fake, **quiet)

    fake, result = again({}, spec.probe)
    assert fake.calls == [] and result["runs"][0]["reused"]
    assert result["runs"][0]["test_f1"] == run["test_f1"]
    assert result["runs"][0]["probe"] == run["probe"]
    assert sum("entity-bias probe" in line for line in lines) == 1
    # Threads and LLM settings do not change the trained model.
    fake, result = again({"train.threads": 2, "llm.max_tokens": 99, "routing.threshold": 0.5})
    assert fake.calls == [] and result["runs"][0]["checkpoint"] == str(folder)
    # Another number of epochs is another model: trained into its own folder.
    fake, result = again({"train.target_epochs": 2})
    assert fake.calls == [("baseline", "politics", 1)]
    other = Path(result["runs"][0]["checkpoint"])
    assert other.parent == folder.parent and other.name.startswith(f"{folder.name}__")
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights  # not overwritten
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert saved["config"]["train"]["target_epochs"] == 1
    # An interrupted run (weights and config, no scores, nothing in the ledger) is not reused.
    (folder / "scores.json").unlink()
    (tmp_path / "results" / "real_runs" / "politics__baseline__seed1.json").unlink()
    fake, result = again({})
    assert fake.calls == [("baseline", "politics", 1)]
    assert result["runs"][0]["checkpoint"] == str(folder)


def test_bad_suite_file_is_one_line_error(tmp_path):
    from cdlm.errors import ConfigError

    bad = tmp_path / "s.toml"
    bad.write_text('name = "x"\nvariants = ["nope"]\ndomains = ["politics"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"s.toml: field 'variants': unknown \['nope'\]"):
        load_suite(bad)


@pytest.fixture
def other_process() -> Iterator[int]:
    """The pid of a live process that is not this one (started here, so it is alive whatever
    our own parent is -- pytest may run as PID 1 with no parent to point at)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_run_locked_by_a_live_process_is_waited_for(tmp_path, other_process):
    """Two suites on one runs folder: the second waits for the first's run, then reuses it."""
    spec = _spec(tmp_path).model_copy(update={"variants": ["baseline"], "domains": ["music"]})
    lock = tmp_path / "runs" / "music__baseline__seed1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(other_process), encoding="utf-8")
    fake = FakeTrain()
    polls = []

    def log(line: str) -> None:
        if "waiting" in line:
            polls.append(line)
            # the other process finishes the run and releases the lock
            done = tmp_path / "runs" / "music__baseline__seed1"
            FakeTrain()(run_config(spec, "baseline", "music", 1), done)
            lock.unlink()

    result = run_suite(spec, train_fn=fake, progress=False, log=log, poll_s=0.01)
    assert len(polls) == 1 and fake.calls == [] and result["runs"][0]["reused"]
    # a stale lock (dead pid) is taken over
    stale = tmp_path / "runs" / "music__baseline__seed2.lock"
    stale.write_text(str(dead_pid()), encoding="utf-8")
    spec2 = spec.model_copy(update={"seeds": [2]})
    run_suite(spec2, train_fn=fake, progress=False, log=lambda _: None, poll_s=0.01)
    assert fake.calls == [("baseline", "music", 2)] and not stale.exists()


def test_locked_run_is_skipped_until_the_rest_are_done(tmp_path, other_process):
    """A run another process is training does not hold up the others: they go first."""
    spec = _spec(tmp_path).model_copy(update={"variants": ["baseline"], "seeds": [1, 2]})
    spec = spec.model_copy(update={"domains": ["music"]})
    lock = tmp_path / "runs" / "music__baseline__seed1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(other_process), encoding="utf-8")
    fake = FakeTrain()
    order = []

    def log(line: str) -> None:
        order.append(line)
        if "waiting" in line:
            FakeTrain()(run_config(spec, "baseline", "music", 1), tmp_path / "runs" / lock.stem)
            lock.unlink()

    result = run_suite(spec, train_fn=fake, progress=False, log=log, poll_s=0.01)
    assert fake.calls == [("baseline", "music", 2)]  # trained while seed 1 was locked
    assert "training" in order[0] and "waiting" in order[1] and "reusing" in order[2]
    assert [r["seed"] for r in result["runs"]] == [1, 2] and result["complete"]


class CountingTrain(FakeTrain):
    """FakeTrain that also writes per-sentence test counts and a history, like train()."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluate_test: list[bool] = []

    def __call__(self, config, out_dir, evaluate_test=True, **kw):
        super().__call__(config, out_dir, **kw)
        self.evaluate_test.append(evaluate_test)
        scores_file = Path(out_dir) / "scores.json"
        scores = json.loads(scores_file.read_text(encoding="utf-8"))
        better = config.train.variant != "baseline"
        # 20 sentences of 2 gold spans: baseline finds 1, the other variant 2, in each.
        scores["test_counts"] = [[2, 2, 2] if better else [1, 1, 2]] * 20
        epochs = 3 if better else 2
        scores["history"] = [{"epoch": e} for e in range(1, epochs + 1)]
        scores["best_epoch"] = 2
        scores_file.write_text(json.dumps(scores), encoding="utf-8")


def test_defined_variants_intervals_and_last_epoch_share(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        'name = "t"\nvariants = ["baseline", "longer"]\ndomains = ["politics", "music"]\n'
        f'runs_dir = "{tmp_path / "runs"}"\nresults_dir = "{tmp_path / "results"}"\n'
        '[define.longer]\nbase = "gcn"\n"train.target_epochs" = 7\n',
        encoding="utf-8",
    )
    spec = load_suite(suite)
    config = run_config(spec, "longer", "music", 1)
    assert config.fusion.enabled and config.train.target_epochs == 7
    assert config.train.variant == "longer"
    fake = CountingTrain()
    result = run_suite(spec, train_fn=fake, progress=False, log=lambda _: None)
    assert fake.evaluate_test == [True] * 4
    interval = result["summary"]["interval"]
    # Every sentence gains the same: the interval is the point itself, 1 - 2/3.
    for d in ("politics", "music", "average"):
        assert interval[d]["longer"] == pytest.approx([1 / 3, 1 / 3])
    md = (tmp_path / "results" / "t.md").read_text(encoding="utf-8")
    assert "+10.00 [+33.33, +33.33]" in md  # delta from the fake F1s, interval from counts
    assert "best dev epoch is the last one trained: 2 of 4" in md
    assert "test_counts" not in (tmp_path / "results" / "t.json").read_text(encoding="utf-8")
    # A dev-only suite never asks training to score the test split.
    dev = spec.model_copy(update={"split": "dev", "name": "t-dev"})
    dev_fake = CountingTrain()
    run_suite(
        dev.model_copy(update={"runs_dir": str(tmp_path / "runs2")}),
        train_fn=dev_fake,
        progress=False,
        log=lambda _: None,
    )
    assert dev_fake.evaluate_test == [False] * 4


def test_define_needs_a_known_base_and_a_new_name(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text(
        'name = "x"\nvariants = ["gcn"]\ndomains = ["politics"]\n[define.gcn]\nbase = "gcn"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="define.gcn"):
        load_suite(bad)


def test_the_factmix_points_a_run_searched_are_listed_with_the_chosen_one() -> None:
    point = lambda e, c, f: {"entity_ratio": e, "context_ratio": c, "dev_f1": f}  # noqa: E731
    grid = {"points": [point(4, 0, 0.60), point(4, 1, 0.65)], "chosen": point(4, 1, 0.65)}
    runs = [
        {"variant": "a+factmix", "domain": "politics", "seed": 1, "augment": {"grid": grid}},
        {"variant": "b", "domain": "politics", "seed": 1, "augment": None},
        {"variant": "c+factmix", "domain": "politics", "seed": 1,
         "augment": {"grid": {"points": [point(4, 1, 0.6)], "chosen": point(4, 1, 0.6)}}},
    ]  # fmt: skip
    rows = [line for line in _grid_lines(runs) if line.startswith("| a")]
    assert rows == ["| a+factmix | politics | 1 | 4/0 60.00, 4/1 65.00* |"]
    assert not [line for line in _grid_lines(runs) if line.startswith(("| b", "| c"))]
    assert _grid_lines(runs[1:]) == []


def test_a_suite_goes_on_from_its_ledger_where_the_checkpoints_are_gone(tmp_path):
    """A fresh machine has the committed ledger but no runs folder: nothing is trained again, the
    results (intervals included) are the same; a config change that shapes the model retrains."""
    import shutil

    spec = _spec(tmp_path)
    first = run_suite(spec, train_fn=CountingTrain(), progress=False, log=lambda _: None)
    ledger = tmp_path / "results" / "tiny_runs"
    assert sorted(p.name for p in ledger.iterdir())[:2] == [
        "music__baseline__seed1.json",
        "music__gcn__seed1.json",
    ]
    assert len(list(ledger.iterdir())) == 6
    shutil.rmtree(tmp_path / "runs")
    fresh = FakeTrain()
    lines: list[str] = []
    again = run_suite(spec, train_fn=fresh, progress=False, log=lines.append)
    assert fresh.calls == [] and again["complete"]
    assert sum("recorded in" in line for line in lines) == 6
    assert again["summary"] == first["summary"] and again["summary"]["interval"]
    assert [r["test_f1"] for r in again["runs"]] == [r["test_f1"] for r in first["runs"]]
    changed = spec.model_copy(update={"overrides": {"train.target_epochs": 2}})
    retrain = FakeTrain()
    run_suite(changed, train_fn=retrain, progress=False, log=lambda _: None)
    assert len(retrain.calls) == 6


def test_a_report_of_the_whole_suite_gathers_what_workers_on_parts_recorded(tmp_path, monkeypatch):
    """Two workers given different variants each train only theirs, and each writes the table
    of the whole suite (never its part alone); the report (no training) holds both."""
    spec = _spec(tmp_path)
    quiet = {"progress": False, "log": lambda _: None}
    first_fake, last_fake = FakeTrain(), FakeTrain()
    first = run_suite(spec, part=select_variants(spec, ["gcn"]), train_fn=first_fake, **quiet)
    assert {c[0] for c in first_fake.calls} == {"gcn"} and len(first_fake.calls) == 3
    assert not first["complete"] and first["planned"] == 6 and len(first["runs"]) == 3
    last = run_suite(spec, part=select_variants(spec, ["baseline"]), train_fn=last_fake, **quiet)
    assert {c[0] for c in last_fake.calls} == {"baseline"} and len(last_fake.calls) == 3
    assert last["complete"] and {r["variant"] for r in last["runs"]} == {"baseline", "gcn"}
    written = json.loads((tmp_path / "results" / "tiny.json").read_text(encoding="utf-8"))
    assert written["complete"] and len(written["runs"]) == 6
    shutil.rmtree(tmp_path / "runs")  # read from the ledger alone
    summaries = []

    def counted(*args):
        summaries.append(1)
        return summarise_suite(*args)

    monkeypatch.setattr("cdlm.experiments.suite.summarise_suite", counted)
    whole = run_suite(spec, train_fn=FakeTrain(), progress=False, log=lambda _: None, train=False)
    assert whole["complete"] and len(whole["runs"]) == 6
    assert len(summaries) == 1  # a report is summed up once, not once per recorded run


def test_a_broken_ledger_entry_is_one_line_naming_it(tmp_path):
    from cdlm.errors import DataError

    spec = _spec(tmp_path)
    run_suite(spec, train_fn=FakeTrain(), progress=False, log=lambda _: None)
    entry = tmp_path / "results" / "tiny_runs" / "music__gcn__seed1.json"
    entry.write_text('{"config_hash": "x", "record": {"variant": ', encoding="utf-8")
    with pytest.raises(DataError, match=r"music__gcn__seed1.json: not a run ledger entry") as exc:
        run_suite(spec, train_fn=FakeTrain(), progress=False, log=lambda _: None)
    assert "\n" not in str(exc.value)
    # JSON, but not an entry: the message names the file and the field
    entry.write_text('{"config_hash": "x", "record": {"variant": 3}}', encoding="utf-8")
    with pytest.raises(DataError, match=r"music__gcn__seed1.json: field 'record") as exc:
        run_suite(spec, train_fn=FakeTrain(), progress=False, log=lambda _: None)
    assert "\n" not in str(exc.value)


def test_probe_table_from_the_runs_probes() -> None:
    from cdlm.experiments.suite import (
        ProbeSummary,
        RunRecord,
        SuiteProbe,
        markdown,
        probe_summary,
    )

    spec = SuiteSpec(
        name="p",
        variants=["baseline", "full"],
        domains=["politics", "music"],
        probe=SuiteProbe(variants=["baseline", "full"], limit=10),
    )

    def run(variant: str, domain: str, seed: int, nonce: float | None) -> RunRecord:
        probe = ProbeSummary(
            split="test", sentences=10, entities=8, survival={"swap": 0.5, "nonce": nonce}
        )
        return RunRecord(
            variant=variant, domain=domain, seed=seed, checkpoint="c", reused=False,
            dev_f1=0.5, test_f1=0.5, test_precision=0.5, test_recall=0.5, probe=probe,
        )  # fmt: skip

    records = [
        run("baseline", "politics", 1, 0.25),
        run("full", "politics", 1, 0.75),
        run("full", "politics", 2, 0.5),
        run("baseline", "music", 1, 0.0),
        run("full", "music", 1, None),  # nothing replaced
    ]
    table = probe_summary(spec, records)
    assert table["per_domain"]["politics"]["full"] == {
        "survival": {"nonce": 0.625, "swap": 0.5},
        "n": 2,
    }
    assert table["average"]["baseline"] == {"nonce": 0.125, "swap": 0.5}  # 0.0 is a rate
    assert table["average"]["full"] == {"nonce": 0.625, "swap": 0.5}
    result = {
        "complete": True,
        "runs": [r.model_dump(mode="json") for r in records],
        "planned": 5,
        "summary": {
            "per_domain": {}, "average": {}, "delta": {}, "interval": {}, "probe": table,
        },
        "provenance": {},
    }  # fmt: skip
    md = markdown(spec, result)
    assert "| nonce survival | politics | music | average |" in md
    assert "| full | 62.5 (2) | – | 62.5 |" in md
    assert "| baseline | 25.0 (1) | 0.0 (1) | 12.5 |" in md


def test_the_committed_final_table_regenerates_from_its_ledger(cdlm_cli, tmp_path, monkeypatch):
    """`cdlm eval --suite evals/crossner_final.toml --no-train` on a machine with no runs folder
    (and no data needed) writes the committed table again: every run, score and interval from
    the committed ledger, byte for byte apart from the lines that say when and how it ran."""
    committed = Path(__file__).resolve().parents[2] / "evals" / "results"
    out = tmp_path / "out"
    monkeypatch.setenv("CDLM_RUNS_DIR", str(tmp_path / "runs"))  # no checkpoint anywhere
    res = cdlm_cli("eval", "--suite", "evals/crossner_final.toml", "--no-train",
                   "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "130 of 130 runs" in res.stderr + res.stdout

    def body(path):
        keep = ("- command:", "- commit:", "- time:")
        return [line for line in path.read_text().splitlines() if not line.startswith(keep)]

    assert body(out / "crossner_final.md") == body(committed / "crossner_final.md")
    new = json.loads((out / "crossner_final.json").read_text())
    old = json.loads((committed / "crossner_final.json").read_text())
    for key in ("complete", "planned", "runs", "summary"):
        assert new[key] == old[key], key
