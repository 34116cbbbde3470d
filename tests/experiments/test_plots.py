"""``cdlm eval --plot`` (cdlm/experiments/plots.py): every PNG is written and readable, and the
confusion matrix draws the counts of a hand-counted example."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdlm.experiments.plots import (
    plot_confusion,
    plot_learning_curve,
    plot_suite,
    plot_suite_deltas,
    plot_type_f1,
)
from cdlm.metrics import span_confusion, span_scores

GOLD = [
    ["B-person", "I-person", "O", "B-location", "O"],  # Angela Merkel | Berlin
    ["B-organisation", "I-organisation", "I-organisation", "O"],
    ["O", "B-person", "O", "B-person"],
]
PRED = [
    ["B-person", "I-person", "O", "B-organisation", "O"],  # Berlin typed as organisation
    ["B-organisation", "I-organisation", "O", "O"],  # cut short: missed + spurious
    ["O", "B-person", "O", "O"],  # second person missed
]


def _png(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG that matplotlib reads back; fails on a missing/empty file."""
    from matplotlib.image import imread

    assert path.is_file() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    return image.shape[0], image.shape[1]


def test_confusion_draws_hand_counts(tmp_path: Path) -> None:
    matrix = plot_confusion(span_confusion(GOLD, PRED), tmp_path / "c.png")
    assert matrix.rows == ["location", "organisation", "person", "spurious"]
    assert matrix.cols == ["location", "organisation", "person", "missed"]
    assert matrix.counts == [
        [0, 1, 0, 0],  # Berlin: location -> organisation
        [0, 0, 0, 1],  # the 3-word organisation: missed
        [0, 0, 2, 1],  # Merkel and one person right, one missed
        [0, 1, 0, 0],  # the 2-word organisation: spurious
    ]
    height, width = _png(tmp_path / "c.png")
    assert height > 200 and width > 200
    assert not list(tmp_path.glob(".*.tmp"))


def test_f1_learning_and_suite_pngs(tmp_path: Path) -> None:
    from cdlm.experiments.suite import RunRecord, SuiteSpec, summarise_suite

    assert plot_type_f1(span_scores(GOLD, PRED), tmp_path / "f1.png") == tmp_path / "f1.png"
    _png(tmp_path / "f1.png")
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "dev_f1": 0.1 * e, "seconds": 1.0} for e in (1, 2, 3)
    ]
    plot_learning_curve(history, tmp_path / "lc.png", best_epoch=3)
    _png(tmp_path / "lc.png")
    heads = [  # a multi-domain model (the default model): a dev F1 per head
        {"epoch": e, "train_loss": 1.0 / e, "dev_f1": {"news": 0.8, "politics": 0.1 * e}}
        for e in (1, 2)
    ]
    plot_learning_curve(heads, tmp_path / "lc_heads.png", best_epoch=2)
    _png(tmp_path / "lc_heads.png")
    spec = SuiteSpec(name="s", variants=["baseline", "gcn"], domains=["politics", "music"])
    runs = [
        RunRecord(
            variant=v,
            domain=d,
            seed=s,
            checkpoint="x",
            reused=True,
            dev_f1=0.5,
            test_f1=0.5 + 0.01 * s,
            test_precision=0.5,
            test_recall=0.5,
        )
        for v in spec.variants
        for d, seeds in (("politics", (1, 2, 3)), ("music", (1,)))
        for s in seeds
    ]
    result = {"name": "s", "suite": spec.model_dump(), "summary": summarise_suite(spec, runs)}
    bars = plot_suite(result, tmp_path / "s.png")
    _png(tmp_path / "s.png")
    assert (bars.domains, bars.variants) == (["politics", "music"], ["baseline", "gcn"])
    # politics: seeds 1..3 give 51, 52, 53 -> mean 52, sample std 1; music: one seed, no bar
    assert bars.means[0] == pytest.approx([52.0, 51.0])
    assert bars.errors[0][0] == pytest.approx(1.0) and math.isnan(bars.errors[0][1])


def test_suite_delta_forest(tmp_path: Path) -> None:
    """Each variant's average delta against the baseline, its paired-bootstrap interval and its
    dev delta, as the summary has them (points of F1)."""
    from cdlm.experiments.suite import RunRecord, SuiteSpec, summarise_suite

    spec = SuiteSpec(name="s", variants=["baseline", "gcn", "causal"], domains=["politics"])
    # 100 test sentences, one gold entity each: baseline finds 50, gcn 70, causal 50
    found = {"baseline": 50, "gcn": 70, "causal": 50}
    runs = [
        RunRecord(
            variant=v,
            domain="politics",
            seed=1,
            checkpoint="x",
            reused=True,
            dev_f1=0.5 + 0.01 * (v == "gcn"),
            test_f1=2 * found[v] / (100 + found[v]),  # precision 1, recall found / 100
            test_precision=1.0,
            test_recall=found[v] / 100,
            test_counts=[[1, 1, 1]] * found[v] + [[0, 0, 1]] * (100 - found[v]),
        )
        for v in spec.variants
    ]
    result = {"name": "s", "suite": spec.model_dump(), "summary": summarise_suite(spec, runs)}
    rows = plot_suite_deltas(result, tmp_path / "s.delta.png")
    _png(tmp_path / "s.delta.png")
    assert rows.variants == ["gcn", "causal"]
    gcn_f1, base_f1 = 2 * 0.7 / 1.7, 2 * 0.5 / 1.5
    assert rows.test[0] == pytest.approx(100 * (gcn_f1 - base_f1))
    assert rows.low[0] <= rows.test[0] <= rows.high[0] and rows.low[0] > 0
    assert rows.test[1] == rows.low[1] == rows.high[1] == 0.0  # the same sentences found
    assert rows.dev == pytest.approx([1.0, 0.0])


def _cli(*args: str) -> tuple[int, str]:
    from cdlm.cli import run

    app = typer.Typer()
    run.register(app)
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    return res.exit_code, res.output


def test_cli_eval_plot(tiny_checkpoint: Path, small_crossner: Path, tmp_path: Path) -> None:
    _, out = _cli(
        "eval",
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(small_crossner),
        "--results-dir",
        str(tmp_path),
        "--plot",
    )
    stem = tmp_path / "politics__default__seed1__test"
    for kind in ("confusion", "f1", "learning"):
        png = Path(f"{stem}.{kind}.png")
        assert f"wrote {png}" in out
        _png(png)
    # The confusion in the results file (what the PNG draws) agrees with the scores.
    record = json.loads(Path(f"{stem}.json").read_text(encoding="utf-8"))
    confusion, scores = record["confusion"], record["scores"]
    assert sum(confusion.get(t, {}).get(t, 0) for t in confusion) == scores["correct"]
    for t in scores["per_type"]:
        assert sum(confusion.get(t["type"], {}).values()) == t["support"]
        predicted = sum(row.get(t["type"], 0) for row in confusion.values())
        assert predicted == t["predicted"]


def test_cli_suite_plot(tmp_path: Path) -> None:
    """A suite whose runs are all finished is read, not trained, and drawn."""
    from cdlm.experiments.suite import load_suite, run_config, run_folder

    suite = tmp_path / "tiny.toml"
    suite.write_text(
        'name = "tiny"\nvariants = ["baseline", "gcn"]\ndomains = ["politics", "music"]\n'
        f'seeds = [1, 2]\nruns_dir = "{tmp_path / "runs"}"\nresults_dir = "{tmp_path / "res"}"\n',
        encoding="utf-8",
    )
    spec = load_suite(suite)
    for variant in spec.variants:
        for domain in spec.domains:
            for seed in spec.seeds:
                config = run_config(spec, variant, domain, seed)
                folder, _ = run_folder(spec, config)
                folder.mkdir(parents=True)
                meta = {"format": 1, "config": config.model_dump(mode="json")}
                (folder / "config.json").write_text(json.dumps(meta), encoding="utf-8")
                f1 = 0.4 + 0.1 * (variant == "gcn") + 0.02 * seed
                score = {"f1": f1, "precision": f1, "recall": f1}
                scores = {"dev": score, "test": score, "best_epoch": 1}
                (folder / "scores.json").write_text(json.dumps(scores), encoding="utf-8")
    _, out = _cli("eval", "--suite", str(suite), "--plot")
    assert "suite tiny: 8 of 8 runs" in out and f"wrote {tmp_path / 'res' / 'tiny.png'}" in out
    _png(tmp_path / "res" / "tiny.png")
    _png(tmp_path / "res" / "tiny.delta.png")
    # Elsewhere with --output, for one domain: the whole suite, read from the suite's ledger.
    shutil.rmtree(tmp_path / "runs")
    other = tmp_path / "other"
    _, out = _cli(
        "eval", "--suite", str(suite), "--no-train", "--domains", "music", "-o", str(other)
    )
    assert "suite tiny: 8 of 8 runs" in out
    assert json.loads((other / "tiny.json").read_text(encoding="utf-8"))["complete"]


def test_plot_with_llm_is_refused() -> None:
    from cdlm.cli import run

    app = typer.Typer()
    run.register(app)
    res = CliRunner().invoke(app, ["eval", "--llm", "llama", "--plot"])
    assert res.exit_code != 0
    assert "--plot is not available with --llm yet" in str(res.exception)


@pytest.mark.parametrize("confusion", [{}, {"spurious": {"x": 2}}])
def test_confusion_edge_cases(confusion: dict, tmp_path: Path) -> None:
    """Nothing at all, or only spurious spans, still draws (no division by zero)."""
    matrix = plot_confusion(confusion, tmp_path / "e.png")
    assert matrix.rows[-1] == "spurious" and matrix.cols[-1] == "missed"
    _png(tmp_path / "e.png")


def test_without_matplotlib_one_line_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from cdlm.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'cdlm\[plot\]'"):
        plot_confusion({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
