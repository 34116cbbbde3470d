"""Pictures of results that are already computed: ``cdlm eval --plot``.

Every function takes what the evaluation or suite already wrote (scores, confusion counts,
the checkpoint's training history, the suite summary) and draws it; nothing is tagged again, so
a PNG always shows the numbers of the results file beside it. Matplotlib (the ``plot`` extra) is
imported inside the functions and used through its object API (``Figure`` with the Agg canvas),
so importing this module is cheap and the caller's pyplot backend is left alone.

Files, beside ``<stem>.json``: ``<stem>.confusion.png`` (span type confusion with "missed" and
"spurious"), ``<stem>.f1.png`` (per-type F1), ``<stem>.learning.png`` (train loss and dev F1 per
epoch); a suite writes ``<name>.png`` (mean test F1 per domain and variant, error bars = sample
std over seeds) and ``<name>.delta.png`` (each variant's average delta against the baseline with
its 95% interval, beside the dev delta the choice is made on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdlm.errors import require
from cdlm.metrics import MISSED, SPURIOUS, SpanScores
from cdlm.results import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cdlm.experiments.evaluate import EvalResult

DPI = 120


@dataclass(frozen=True)
class ConfusionMatrix:
    """The matrix as drawn: ``counts[i][j]`` = spans of gold ``rows[i]`` predicted as
    ``cols[j]``; the last row is ``spurious``, the last column ``missed``."""

    rows: list[str]
    cols: list[str]
    counts: list[list[int]]


def confusion_matrix(confusion: Mapping[str, Mapping[str, int]]) -> ConfusionMatrix:
    """The dense matrix of :func:`cdlm.metrics.span_confusion` counts: the same sorted types on
    both axes (so the diagonal is the correct spans), then ``spurious`` / ``missed``."""
    types = sorted(
        ({row for row in confusion} | {col for cells in confusion.values() for col in cells})
        - {MISSED, SPURIOUS}
    )
    rows, cols = [*types, SPURIOUS], [*types, MISSED]
    counts = [[int(confusion.get(r, {}).get(c, 0)) for c in cols] for r in rows]
    return ConfusionMatrix(rows, cols, counts)


def _figure(width: float, height: float) -> Figure:
    figure = require("matplotlib.figure", "plot", "cdlm eval --plot")
    return figure.Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically: never a half-written picture."""
    with atomic_file(path, binary=True) as fh:
        fig.savefig(fh, format="png")
    return path


def plot_confusion(
    confusion: Mapping[str, Mapping[str, int]], path: Path | str, title: str = ""
) -> ConfusionMatrix:
    """Draw the span type confusion (colour = share of the row, text = count); returns the
    matrix it drew."""
    import numpy as np

    matrix = confusion_matrix(confusion)
    counts = np.array(matrix.counts, dtype=float).reshape(len(matrix.rows), len(matrix.cols))
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = 2.2 + 0.55 * len(matrix.cols)
    fig = _figure(max(side + 1.4, 6.5), side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the gold row")
    for i, row in enumerate(matrix.counts):
        for j, n in enumerate(row):
            if n:
                color = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(matrix.cols)), matrix.cols, rotation=45, ha="right")
    ax.set_yticks(range(len(matrix.rows)), matrix.rows)
    ax.set_xlabel(
        "predicted type\nmissed: no predicted span at a gold span's offsets\n"
        "spurious: no gold span at a predicted span's offsets",
        fontsize=8,
    )
    ax.set_ylabel("gold type")
    # Separate the missed column and spurious row from the type-by-type block.
    ax.axvline(len(matrix.cols) - 1.5, color="grey", linewidth=1)
    ax.axhline(len(matrix.rows) - 1.5, color="grey", linewidth=1)
    ax.set_title(title or "span type confusion", fontsize=10)
    _save(fig, Path(path))
    return matrix


def plot_type_f1(scores: SpanScores, path: Path | str, title: str = "") -> Path:
    """Horizontal F1 bars per type, with gold and predicted counts, and the micro F1 line."""
    types = list(scores.per_type)
    fig = _figure(7.5, 1.2 + 0.4 * max(len(types), 1))
    ax = fig.add_subplot()
    y = range(len(types))
    ax.barh(list(y), [100 * t.f1 for t in types], color="tab:blue")
    for i, t in enumerate(types):
        ax.text(
            100 * t.f1 + 1,
            i,
            f"{100 * t.f1:.1f}  (gold {t.support}, predicted {t.predicted})",
            va="center",
            fontsize=8,
        )
    ax.axvline(
        100 * scores.f1, color="tab:red", linestyle="--", label=f"micro {100 * scores.f1:.1f}"
    )
    ax.set_yticks(list(y), [t.type for t in types])
    ax.invert_yaxis()
    ax.set_xlim(0, 140)  # room for the counts right of the longest bar
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("F1 (%), strict IOB2 spans")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "F1 per type", fontsize=10)
    return _save(fig, Path(path))


def plot_learning_curve(
    history: Sequence[Mapping[str, Any]],
    path: Path | str,
    best_epoch: int | None = None,
    title: str = "",
) -> Path:
    """Mean train loss (left axis) and dev F1 (right axis) per epoch; the kept epoch marked. A
    multi-domain model's history holds a dev F1 per head: one line each, and their mean."""
    epochs = [int(h["epoch"]) for h in history]
    fig = _figure(6.5, 3.8)
    ax = fig.add_subplot()
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean train loss", color="tab:blue")
    right = ax.twinx()
    dev = [h["dev_f1"] for h in history]
    if dev and isinstance(dev[0], Mapping):  # a model with a head per domain
        for head in dev[0]:
            right.plot(epochs, [100 * d[head] for d in dev], ".-", lw=1, label=f"dev F1 {head}")
        mean = [100 * sum(d.values()) / len(d) for d in dev]
        right.plot(epochs, mean, "s-", color="black", label="dev F1 mean")
    else:
        right.plot(epochs, [100 * d for d in dev], "s-", color="tab:orange", label="dev F1")
    right.set_ylabel("dev F1 (%)", color="tab:orange")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
    ax.set_xticks(epochs)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    ax.set_title(title or "learning curve", fontsize=10)
    return _save(fig, Path(path))


def plot_eval(result: EvalResult, json_path: Path | str) -> tuple[list[Path], list[str]]:
    """The PNGs of one ``cdlm eval`` beside its results file: (written, skipped with why)."""
    base = Path(json_path).with_suffix("")
    what = f"{result.domain} {result.split} ({result.variant}, seed {result.seed})"
    written, skipped = [], []
    if result.confusion is not None:
        plot_confusion(result.confusion, f"{base}.confusion.png", f"{what}: span type confusion")
        written.append(Path(f"{base}.confusion.png"))
    written.append(plot_type_f1(result.scores, f"{base}.f1.png", f"{what}: F1 per type"))
    history = (result.training or {}).get("history")
    if history:
        best = result.training.get("best_epoch") if result.training else None
        written.append(
            plot_learning_curve(
                history,
                f"{base}.learning.png",
                best,
                f"{result.domain} ({result.variant}, seed {result.seed}): training, dev F1",
            )
        )
    else:
        skipped.append(f"learning curve: {result.checkpoint} has no scores.json history")
    return written, skipped


@dataclass(frozen=True)
class SuiteBars:
    """The bars as drawn: ``means[v][d]`` and ``errors[v][d]`` (F1 in %) for variant
    ``variants[v]`` on domain ``domains[d]``; NaN where the run is missing (mean) or there is
    one seed only (error bar)."""

    domains: list[str]
    variants: list[str]
    means: list[list[float]]
    errors: list[list[float]]


def plot_suite(result: Mapping[str, Any], path: Path | str) -> SuiteBars:
    """Grouped bars of a suite's summary: mean test F1 per domain and variant, error bars =
    sample std over seeds (none for a single seed, marked n=1); returns the bars drawn."""
    import numpy as np

    spec = result["suite"]
    table = result["summary"]["per_domain"]
    domains = [d for d in spec["domains"] if d in table]
    variants = spec["variants"]
    width = 0.8 / max(len(variants), 1)
    fig = _figure(1.5 + 1.6 * max(len(domains), 1), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(domains))
    bars = SuiteBars(domains, list(variants), [], [])
    palette = require("matplotlib", "plot", "cdlm eval --plot").colormaps
    # one distinct colour per variant: tab10 repeats after ten
    colors = palette["tab10" if len(variants) <= 10 else "tab20"].colors
    for k, variant in enumerate(variants):
        cells = [table[d].get(variant) for d in domains]
        means = [100 * c["mean"] if c else float("nan") for c in cells]
        stds = [100 * c["std"] if c and c["n"] > 1 else float("nan") for c in cells]
        offset = (k - (len(variants) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=stds, capsize=3, label=variant, color=colors[k])
        bars.means.append(means)
        bars.errors.append(stds)
    seeds = [max((table[d][v]["n"] for v in table[d]), default=0) for d in domains]
    ax.set_xticks(x, [f"{d}\nn={n}" for d, n in zip(domains, seeds, strict=True)])
    ax.set_ylabel(f"{spec.get('split', 'test')} F1 (%)")
    ax.legend(fontsize=8, ncols=min(len(variants), 4), loc="upper right")
    top = max((100 * c["mean"] for d in domains for c in table[d].values()), default=100)
    ax.set_ylim(0, min(100, top * 1.25))
    ax.set_title(
        f"suite {result['name']}: mean over seeds, error bars = sample std (n = seeds)",
        fontsize=10,
    )
    _save(fig, Path(path))
    return bars


@dataclass(frozen=True)
class DeltaRows:
    """The rows as drawn, in points of F1: ``test[v]`` with interval ``low[v]``..``high[v]``
    (NaN where the suite has none) and ``dev[v]``, for ``variants[v]`` against ``baseline``."""

    baseline: str
    variants: list[str]
    test: list[float]
    low: list[float]
    high: list[float]
    dev: list[float]


def plot_suite_deltas(result: Mapping[str, Any], path: Path | str) -> DeltaRows:
    """One row per variant with an average over all domains: its test delta against the
    baseline with the 95% paired-bootstrap interval, and its dev delta (hollow). A forest of
    intervals reads faster than a table of them: which rows clear zero, and by how much."""
    import numpy as np

    summary = result["summary"]
    baseline = result["suite"].get("baseline", "baseline")
    test, dev = summary.get("average", {}), summary.get("dev_average", {})
    interval = summary.get("interval", {}).get("average", {})
    variants = [v for v in result["suite"]["variants"] if v in test and v != baseline]
    nan = float("nan")
    rows = DeltaRows(
        baseline,
        variants,
        [100 * (test[v] - test[baseline]) for v in variants],
        [100 * interval[v][0] if v in interval else nan for v in variants],
        [100 * interval[v][1] if v in interval else nan for v in variants],
        [100 * (dev[v] - dev[baseline]) if v in dev else nan for v in variants],
    )
    y = np.arange(len(variants))[::-1]
    fig = _figure(8.0, 1.2 + 0.32 * max(len(variants), 1))
    ax = fig.add_subplot()
    mid = np.array(rows.test)
    err = np.array([mid - np.array(rows.low), np.array(rows.high) - mid])
    ax.errorbar(mid, y, xerr=err, fmt="o", capsize=3, label="test, 95% interval")
    ax.plot(rows.dev, y, "o", mfc="none", label="dev (what is chosen on)")
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(y, variants)
    ax.set_xlabel(f"average F1 over domains minus {baseline} (points)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside the rows
    ax.set_title(f"suite {result['name']}: delta against {baseline}", fontsize=10)
    _save(fig, Path(path))
    return rows
