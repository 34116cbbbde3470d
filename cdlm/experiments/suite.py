"""Evaluation suites: variants x domains x seeds, trained (or reused) and compared in one table.

A suite file (TOML, e.g. ``evals/crossner.toml``) lists the variants (names in
:data:`cdlm.config.VARIANTS`), the domains and the seeds. For every run the suite builds the
config (base config file + suite overrides + variant overrides + target and seed), then:

- **reuse** a finished run of the same config: ``<runs>/<domain>__<variant>__seed<N>`` (the
  folder ``cdlm train`` uses by default) or the suite's own ``...__<config hash>`` folder, when
  its ``config.json`` holds the same training config and ``scores.json`` exists (``train``
  writes it last, so its presence means the run finished);
- otherwise **train** it (:func:`cdlm.experiments.train.train`, which also scores the test
  split at the best dev epoch). A default folder holding a *different* config is never
  overwritten: the run goes to the hashed folder instead.

After every run it trains the results file is rewritten, so an interrupted suite loses at most
the run in progress and the next invocation resumes where it stopped. Every finished run is also
recorded in the suite's ledger (:mod:`cdlm.experiments.ledger`, ``<results_dir>/<name>_runs/``),
which is committed: where the checkpoints are gone (a fresh machine) a recorded run with the
same training config is read from there instead of trained again. A ``[probe]`` section names
the variants and seeds whose checkpoints get the entity-bias probe as soon as they are finished.

Results: ``<results_dir>/<name>.json`` (every run, per domain and variant mean and sample std
over seeds, the average over domains of the per-domain means, deltas against the ``baseline``
variant, and provenance) and ``<name>.md`` (the same as tables). Model selection uses dev only;
the test score is read at the best dev epoch.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdlm.config import VARIANTS, CdlmConfig, load_config, one_line, read_toml
from cdlm.errors import ConfigError
from cdlm.experiments.ledger import ProbeSummary, RunRecord, recorded_run, write_entry
from cdlm.results import RESULTS_DIR
from cdlm.results import write_results as write_record
from cdlm.runs import (
    claim,
    config_hash,
    first_finished,
    run_folders,
    runs_dir,
    saved_config,
    training_view,
)

__all__ = ["RunRecord", "SuiteProbe", "SuiteSpec", "load_suite", "run_suite"]


class SuiteProbe(BaseModel):
    """The entity-bias probe the suite runs on some of its runs right after they finish (while
    the checkpoint is at hand); the survival rates go into the run's ledger record."""

    model_config = ConfigDict(extra="forbid")

    variants: list[str] = Field(min_length=1)
    seeds: list[int] = Field([1], min_length=1)
    split: str = "test"
    limit: int | None = Field(150, ge=1)  # the first N sentences of the split (None = all)


class SuiteSpec(BaseModel):
    """The contents of a suite TOML file."""

    model_config = ConfigDict(extra="forbid")

    name: str
    variants: list[str] = Field(min_length=1)
    domains: list[str] = Field(min_length=1)
    seeds: list[int] = Field([1], min_length=1)
    # Per-domain seed lists that replace ``seeds`` for that domain.
    domain_seeds: dict[str, list[int]] = {}
    # Per-variant seed lists that replace both (e.g. 3 seeds for the rows with intervals).
    variant_seeds: dict[str, list[int]] = {}
    split: str = "test"
    baseline: str = "baseline"  # the variant deltas are computed against
    config: str | None = None  # base config TOML (relative to the suite file)
    overrides: dict[str, Any] = {}  # dotted config overrides applied to every run
    # Variants defined by this file (tuning grids): name -> {base = "<a VARIANTS name>",
    # "<dotted key>" = value, ...}, applied on top of the base variant's overrides.
    define: dict[str, dict[str, Any]] = {}
    runs_dir: str | None = None  # None = $CDLM_RUNS_DIR, else ./runs (as `cdlm train`)
    results_dir: str = str(RESULTS_DIR)
    # One record per finished run (cdlm.experiments.ledger); None = <results_dir>/<name>_runs.
    # Committed, it lets the suite go on on a machine without the checkpoints.
    ledger: str | None = None
    probe: SuiteProbe | None = None


def load_suite(path: Path) -> SuiteSpec:
    data = read_toml(path, "suite file")
    try:
        spec = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, str(path))) from None
    for name, entry in spec.define.items():
        if name in VARIANTS or entry.get("base") not in VARIANTS:
            raise ConfigError(
                f"{path}: field 'define.{name}': needs a new name and base = one of "
                f"{', '.join(VARIANTS)}"
            )
    unknown = [v for v in spec.variants if v not in VARIANTS and v not in spec.define]
    if unknown:
        raise ConfigError(
            f"{path}: field 'variants': unknown {unknown}; known: {', '.join(VARIANTS)}"
        )
    if spec.probe is not None and (extra := set(spec.probe.variants) - set(spec.variants)):
        raise ConfigError(f"{path}: field 'probe.variants': {sorted(extra)} not in 'variants'")
    if spec.config is not None:
        spec.config = str((Path(path).parent / spec.config).resolve())
    if spec.runs_dir is None:
        spec.runs_dir = str(runs_dir())
    return spec


def variant_overrides(spec: SuiteSpec, variant: str) -> dict[str, Any]:
    """The dotted overrides of a named variant or of one the suite file defines."""
    if variant in spec.define:
        entry = dict(spec.define[variant])
        return {**VARIANTS[entry.pop("base")], **entry}
    return VARIANTS[variant]


def run_config(spec: SuiteSpec, variant: str, domain: str, seed: int) -> CdlmConfig:
    overrides = {
        **spec.overrides,
        **variant_overrides(spec, variant),
        "train.variant": variant,
        "train.target": domain,
        "train.seed": seed,
    }
    cfg = load_config(Path(spec.config) if spec.config else None, overrides)
    if cfg.multisource.auxiliaries:  # `all` named per target, as the run saves it
        from cdlm.experiments.multisource import expand_auxiliaries

        cfg.multisource.auxiliaries = expand_auxiliaries(domain, cfg.multisource.auxiliaries)
    return cfg


def run_folder(spec: SuiteSpec, config: CdlmConfig) -> tuple[Path, bool]:
    """(folder, finished): where this run's checkpoint is, or is to be trained."""
    default, hashed = run_folders(spec.runs_dir, config)
    wanted = training_view(config)
    done = first_finished((default, hashed), wanted)
    if done is not None:
        return done, True
    # Train into the default folder unless it holds another config's run.
    default_taken = (default / "config.json").is_file() and saved_config(default) != wanted
    return (hashed if default_taken else default), False


def ledger_dir(spec: SuiteSpec) -> Path:
    return Path(spec.ledger) if spec.ledger else Path(spec.results_dir) / f"{spec.name}_runs"


def wants_probe(spec: SuiteSpec, variant: str, seed: int) -> bool:
    return spec.probe is not None and variant in spec.probe.variants and seed in spec.probe.seeds


def probe_run(
    probe: SuiteProbe, folder: Path, domain: str, data_dir: Path | str | None
) -> ProbeSummary:
    """The entity-bias probe of one finished run (its checkpoint must be at hand)."""
    from cdlm.experiments.probe import resolve_input, run_probe
    from cdlm.model.tagger import Tagger

    sentences, _, own = resolve_input(f"{domain}/{probe.split}", data_dir)
    sentences = sentences[: probe.limit] if probe.limit else sentences
    entities, modes = run_probe(Tagger.load(folder), sentences, own, data_dir)
    return ProbeSummary(
        split=probe.split,
        sentences=len(sentences),
        entities=entities,
        survival={name: mode.overall.rate for name, mode in modes.items()},
    )


def _record(variant: str, domain: str, seed: int, folder: Path, reused: bool, split: str):
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    test = scores.get("test") if split == "test" else None
    if split == "dev":  # the dev scores at the chosen epoch (and alpha), as training saw them
        test = scores["dev"]
    if test is None:  # the run did not score this split at training time
        from cdlm.experiments.evaluate import evaluate_checkpoint

        test = evaluate_checkpoint(folder, split).scores.model_dump()
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    causal = saved.get("config", {}).get("causal", {})
    return RunRecord(
        variant=variant,
        domain=domain,
        seed=seed,
        checkpoint=str(folder),
        reused=reused,
        dev_f1=scores["dev"]["f1"],
        test_f1=test["f1"],
        test_precision=test["precision"],
        test_recall=test["recall"],
        best_epoch=scores.get("best_epoch"),
        epochs_run=len(scores.get("history") or []) or None,
        target_seconds=scores.get("target_seconds"),
        augment=scores.get("augment"),
        alpha=causal.get("alpha") if causal.get("explicit") else None,
        test_counts=scores.get("test_counts") if split == "test" else None,
    )


def summarise_suite(spec: SuiteSpec, records: list[RunRecord]) -> dict[str, Any]:
    """Per (domain, variant): mean and sample std of test F1 over seeds (std 0 for one seed);
    per variant: the mean over domains (only when every domain has a result), of test and of
    dev F1 (dev is what a choice between variants is made on); deltas against the baseline
    variant's means."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for domain in spec.domains:
        for variant in spec.variants:
            f1s = [r.test_f1 for r in records if r.domain == domain and r.variant == variant]
            if f1s:
                table.setdefault(domain, {})[variant] = {
                    "mean": statistics.fmean(f1s),
                    "std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
                    "n": len(f1s),
                    "dev_mean": statistics.fmean(
                        r.dev_f1 for r in records if r.domain == domain and r.variant == variant
                    ),
                }
    average, dev_average = {}, {}
    for variant in spec.variants:
        cells = [table.get(d, {}).get(variant) for d in spec.domains]
        if all(cells):
            average[variant] = statistics.fmean(c["mean"] for c in cells)  # type: ignore[index]
            dev_average[variant] = statistics.fmean(c["dev_mean"] for c in cells)  # type: ignore[index]
    delta: dict[str, dict[str, float]] = {}
    for domain, row in table.items():
        if spec.baseline in row:
            for variant, cell in row.items():
                if variant != spec.baseline:
                    delta.setdefault(domain, {})[variant] = (
                        cell["mean"] - row[spec.baseline]["mean"]
                    )
    if spec.baseline in average:
        for variant, mean in average.items():
            if variant != spec.baseline:
                delta.setdefault("average", {})[variant] = mean - average[spec.baseline]
    return {
        "per_domain": table,
        "average": average,
        "dev_average": dev_average,
        "delta": delta,
        "interval": intervals(spec, records),
        "probe": probe_summary(spec, records),
    }


def probe_summary(spec: SuiteSpec, records: list[RunRecord]) -> dict[str, dict[str, Any]]:
    """Per (domain, variant): mean type survival per probe mode over the probed seeds; per
    variant: the mean over domains of those means, when every domain was probed."""
    probes: dict[str, dict[str, list[ProbeSummary]]] = {}
    for r in records:
        if r.probe is not None:
            probes.setdefault(r.domain, {}).setdefault(r.variant, []).append(r.probe)
    table = {
        domain: {
            variant: {"survival": _mean_survival([p.survival for p in ps]), "n": len(ps)}
            for variant, ps in row.items()
        }
        for domain, row in probes.items()
    }
    average = {}
    for variant in spec.variants:
        cells = [table.get(d, {}).get(variant) for d in spec.domains]
        if all(cells):
            average[variant] = _mean_survival([c["survival"] for c in cells])  # type: ignore[index]
    return {"per_domain": table, "average": average}


def _mean_survival(rates: list[dict[str, float | None]]) -> dict[str, float]:
    """Mode -> mean of the rates that exist (a mode with no replaced entity has None)."""
    modes = sorted({m for r in rates for m in r})
    means = {}
    for mode in modes:
        known = [r[mode] for r in rates if r.get(mode) is not None]
        if known:
            means[mode] = statistics.fmean(known)  # type: ignore[arg-type]
    return means


BOOTSTRAP_RESAMPLES = 2000


def intervals(spec: SuiteSpec, records: list[RunRecord]) -> dict[str, dict[str, list[float]]]:
    """95% paired-bootstrap intervals (over test sentences, :func:`cdlm.metrics.paired_bootstrap`)
    of each variant's delta against the baseline: per domain, and for the average over domains
    when every domain has both. Cells need the per-sentence counts of every run involved."""
    from cdlm.metrics import paired_bootstrap

    def counts(domain: str, variant: str) -> list | None:
        runs = [r for r in records if r.domain == domain and r.variant == variant]
        if not runs or any(r.test_counts is None for r in runs):
            return None
        return [r.test_counts for r in runs]

    out: dict[str, dict[str, list[float]]] = {}
    for variant in spec.variants:
        if variant == spec.baseline:
            continue
        pairs = {d: (counts(d, variant), counts(d, spec.baseline)) for d in spec.domains}
        ready = {d: p for d, p in pairs.items() if p[0] is not None and p[1] is not None}
        for d, (v, b) in ready.items():
            _, lo, hi = paired_bootstrap([v], [b], BOOTSTRAP_RESAMPLES)
            out.setdefault(d, {})[variant] = [lo, hi]
        if len(ready) == len(spec.domains):
            _, lo, hi = paired_bootstrap(
                [ready[d][0] for d in spec.domains],
                [ready[d][1] for d in spec.domains],
                BOOTSTRAP_RESAMPLES,
            )
            out.setdefault("average", {})[variant] = [lo, hi]
    return out


def markdown(spec: SuiteSpec, result: dict[str, Any]) -> str:
    summary = result["summary"]
    table, avg, delta = summary["per_domain"], summary["average"], summary["delta"]
    interval = summary.get("interval", {})
    head = "| variant | " + " | ".join(spec.domains) + " | average |"
    lines = [
        f"# Suite `{spec.name}`: {spec.split} F1 (strict IOB2 span micro-F1, %)",
        "",
        f"{'Complete' if result['complete'] else 'INCOMPLETE'}: "
        f"{len(result['runs'])} of {result['planned']} runs. Cells: mean ± sample std over "
        "seeds (n seeds); checkpoints chosen on dev F1.",
        "",
        head,
        "|---|" + "---:|" * (len(spec.domains) + 1),
    ]
    lines += _variant_rows(
        spec, table, avg, lambda c: f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} ({c['n']})"
    )
    if spec.split != "dev":
        dev_avg = summary.get("dev_average", {})
        lines += [
            "",
            "Dev F1 at the chosen epochs, mean over seeds (what a choice between variants is "
            "made on; the test table above is read, never chosen on):",
            "",
            head,
            "|---|" + "---:|" * (len(spec.domains) + 1),
        ]
        lines += _variant_rows(spec, table, dev_avg, lambda c: f"{100 * c['dev_mean']:.2f}")
    others = [v for v in spec.variants if v != spec.baseline]
    if others:
        lines += [
            "",
            f"Delta against `{spec.baseline}` (points of F1; [95% interval, paired bootstrap "
            f"over test sentences, {BOOTSTRAP_RESAMPLES} resamples] where every run stored its "
            "per-sentence counts):",
            "",
            head,
            "|---|" + "---:|" * (len(spec.domains) + 1),
        ]
        for variant in others:
            cells = []
            for d in [*spec.domains, "average"]:
                if variant not in delta.get(d, {}):
                    cells.append("–")
                    continue
                cell = f"{100 * delta[d][variant]:+.2f}"
                if variant in interval.get(d, {}):
                    lo, hi = interval[d][variant]
                    cell += f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
                cells.append(cell)
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    runs = result["runs"]
    other = f" {spec.split} F1 |" if spec.split != "dev" else ""  # dev: one dev column
    at_cap = [r for r in runs if r.get("epochs_run") and r["best_epoch"] == r["epochs_run"]]
    lines += [
        "",
        f"Runs whose best dev epoch is the last one trained: {len(at_cap)} of {len(runs)}.",
        "",
        "Runs (wall time: target fine-tuning incl. dev evaluation and any FactMix grid):",
        "",
        f"| variant | domain | seed | dev F1 |{other} best / run epochs "
        "| alpha (dev) | minutes | checkpoint | reused |",
        "|---|---|---:|---:|" + ("---:|" if other else "") + "---:|---:|---:|---|---|",
    ]
    for r in runs:
        minutes = "–" if r.get("target_seconds") is None else f"{r['target_seconds'] / 60:.1f}"
        score = f" {100 * r['test_f1']:.2f} |" if other else ""
        lines.append(
            f"| {r['variant']} | {r['domain']} | {r['seed']} | {100 * r['dev_f1']:.2f} "
            f"|{score} {r['best_epoch']} / {r.get('epochs_run') or '–'} "
            f"| {'–' if r.get('alpha') is None else r['alpha']} | {minutes} "
            f"| `{r['checkpoint']}` | {r['reused']} |"
        )
    lines += _grid_lines(runs)
    lines += _probe_lines(spec, summary.get("probe") or {})
    prov = result["provenance"]
    lines += [
        "",
        f"- command: `{prov.get('command')}`",
        f"- commit: `{prov.get('commit')}`",
        f"- time: {prov.get('time')}, machine: {prov.get('machine')}",
    ]
    return "\n".join(lines) + "\n"


def _variant_rows(
    spec: SuiteSpec,
    table: dict[str, dict[str, dict[str, Any]]],
    average: dict[str, float],
    cell: Callable[[dict[str, Any]], str],
) -> list[str]:
    """One table row per variant: ``cell`` of each domain's entry ("–" where none), then the
    average over domains."""
    rows = []
    for variant in spec.variants:
        cells = [cell(c) if (c := table.get(d, {}).get(variant)) else "–" for d in spec.domains]
        a = average.get(variant)
        mean = "–" if a is None else f"{100 * a:.2f}"
        rows.append(f"| {variant} | " + " | ".join(cells) + f" | {mean} |")
    return rows


def _grid_lines(runs: list[dict[str, Any]]) -> list[str]:
    """The FactMix ratio points each run searched on dev, so a choice can be read off."""

    def points(run: dict[str, Any]) -> list[dict[str, Any]]:
        grid = (run.get("augment") or {}).get("grid") or {}
        return grid.get("points", [])

    searched = [r for r in runs if len(points(r)) > 1]
    if not searched:
        return []
    lines = [
        "",
        "FactMix (entity, context) ratio points searched on dev (dev F1; * = chosen):",
        "",
        "| variant | domain | seed | points |",
        "|---|---|---:|---|",
    ]
    for r in searched:
        grid = r["augment"]["grid"]
        points = ", ".join(
            f"{p['entity_ratio']}/{p['context_ratio']} {100 * p['dev_f1']:.2f}"
            + ("*" if p == grid["chosen"] else "")
            for p in grid["points"]
        )
        lines.append(f"| {r['variant']} | {r['domain']} | {r['seed']} | {points} |")
    return lines


def _probe_lines(spec: SuiteSpec, probe: dict[str, Any]) -> list[str]:
    """Type survival per probe mode: variants x domains, and the gain over the baseline."""
    table, average = probe.get("per_domain") or {}, probe.get("average") or {}
    if spec.probe is None or not table:
        return []
    modes = sorted({m for row in table.values() for c in row.values() for m in c["survival"]})
    limit = f"the first {spec.probe.limit}" if spec.probe.limit else "all"
    lines = [
        "",
        f"Entity-bias probe: share of predicted entities whose type survives when the name is "
        f"swapped for a same-type name from another domain (swap) or replaced by a placeholder, "
        f"on {limit} {spec.probe.split} sentences (%, mean over seeds {spec.probe.seeds}; n "
        "seeds probed):",
    ]
    for mode in modes:
        lines += [
            "",
            f"| {mode} survival | " + " | ".join(spec.domains) + " | average |",
            "|---|" + "---:|" * (len(spec.domains) + 1),
        ]
        for variant in spec.probe.variants:
            cells = []
            for d in spec.domains:
                c = table.get(d, {}).get(variant)
                rate = None if c is None else c["survival"].get(mode)
                cells.append("–" if rate is None else f"{100 * rate:.1f} ({c['n']})")  # type: ignore[index]
            a = average.get(variant, {}).get(mode)
            cells.append("–" if a is None else f"{100 * a:.1f}")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def seeds_for(spec: SuiteSpec, variant: str, domain: str) -> list[int]:
    if variant in spec.variant_seeds:
        return spec.variant_seeds[variant]
    return spec.domain_seeds.get(domain, spec.seeds)


def planned_runs(spec: SuiteSpec) -> list[tuple[str, str, int]]:
    """(variant, domain, seed), seeds outermost so every variant gets its first seed early."""
    runs = []
    max_seeds = max(len(seeds_for(spec, v, d)) for d in spec.domains for v in spec.variants)
    for k in range(max_seeds):
        for domain in spec.domains:
            for variant in spec.variants:
                seeds = seeds_for(spec, variant, domain)
                if k < len(seeds):
                    runs.append((variant, domain, seeds[k]))
    return runs


def _select(spec: SuiteSpec, field: str, names: list[str]) -> SuiteSpec:
    """The suite restricted to some of its ``field`` (variants or domains), in the file's order."""
    have: list[str] = getattr(spec, field)
    unknown = [n for n in names if n not in have]
    if unknown or not names:
        raise ConfigError(
            f"--{field}: {unknown or 'none given'} not in the suite's {', '.join(have)}"
        )
    return spec.model_copy(update={field: [x for x in have if x in names]})


def select_domains(spec: SuiteSpec, names: list[str]) -> SuiteSpec:
    """``cdlm eval suite F --domains a,b``."""
    return _select(spec, "domains", names)


def select_variants(spec: SuiteSpec, names: list[str]) -> SuiteSpec:
    """``cdlm eval suite F --variants a,b``."""
    return _select(spec, "variants", names)


def run_suite(
    spec: SuiteSpec,
    *,
    train_fn: Callable[..., Any] | None = None,
    data_dir: Path | str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    poll_s: float | None = None,
    train: bool = True,
    part: SuiteSpec | None = None,
) -> dict[str, Any]:
    """Train or reuse every planned run, rewriting the results after each one trained and at
    the end; returns them.
    With ``train`` False, only the finished runs are read (a report of a suite in progress).

    ``part`` (``spec`` narrowed by :func:`select_variants` / :func:`select_domains`): train or
    reuse only its runs, as one of several workers on the suite. The results still cover the
    whole suite, with the runs other workers recorded read from the ledger, so a worker on a
    part never overwrites the table with that part alone.

    ``train_fn(config, out_dir, data_dir=..., runs=..., progress=...)`` defaults to
    :func:`cdlm.experiments.multisource.train_multisource`: a variant that sets
    ``multisource.auxiliaries`` trains beside them, any other is exactly
    :func:`cdlm.experiments.train.train`.
    """
    from cdlm.provenance import stamp

    if train_fn is None:
        from cdlm.experiments.multisource import train_multisource as train_fn

    results_dir, ledger = Path(spec.results_dir), ledger_dir(spec)
    plan = planned_runs(spec)
    configs = [run_config(spec, *run) for run in plan]
    hashes = [config_hash(c) for c in configs]
    records: dict[int, RunRecord] = {}
    result: dict[str, Any] = {}
    first_config = training_view(configs[0])
    if poll_s is None:
        poll_s = configs[0].train.lock_poll_seconds

    def write_results() -> None:
        """The results of every run finished so far: by this process, or recorded in the ledger
        (by another suite process, or on another machine)."""
        nonlocal result
        done = []
        for k, (variant, domain, seed) in enumerate(plan):
            record = records.get(k) or recorded_run(ledger, variant, domain, seed, hashes[k])
            if record is not None:
                done.append(record)
        result = {
            "name": spec.name,
            "split": spec.split,
            "complete": len(done) == len(plan),
            "planned": len(plan),
            "suite": spec.model_dump(mode="json"),
            "runs": [r.model_dump(mode="json") for r in done],
            "summary": summarise_suite(spec, done),
            "provenance": stamp(
                variants={v: variant_overrides(spec, v) for v in spec.variants},
                first_run_config=first_config,
            ),
        }
        write_record(results_dir / f"{spec.name}.json", result, markdown(spec, result))

    def finish(k: int, folder: Path, reused: bool) -> RunRecord:
        """The run's record from its folder, probed if the suite asks, kept in the ledger."""
        variant, domain, seed = plan[k]
        record = _record(variant, domain, seed, folder, reused, spec.split)
        kept = recorded_run(ledger, variant, domain, seed, hashes[k])
        if wants_probe(spec, variant, seed):
            if kept is not None and kept.probe is not None:
                record.probe = kept.probe
            else:
                log(f"{variant} {domain} seed {seed}: entity-bias probe")
                record.probe = probe_run(spec.probe, folder, domain, data_dir)  # type: ignore[arg-type]
        if kept is None or (record.probe is not None and kept.probe is None):
            provenance = stamp(seed=seed, config=training_view(configs[k]))
            write_entry(ledger, record, hashes[k], provenance)
        return record

    # Runs another process is training are skipped and retried after the rest, so several
    # suite processes on one runs folder share the work instead of queueing behind each other.
    mine = set(planned_runs(part)) if part is not None else set(plan)
    pending = [k for k, run in enumerate(plan) if run in mine]
    while pending:
        waiting = []
        for k in pending:
            variant, domain, seed = plan[k]
            what = f"[{k + 1}/{len(plan)}] {variant} {domain} seed {seed}"
            folder, done = run_folder(spec, configs[k])
            recorded = None if done else recorded_run(ledger, variant, domain, seed, hashes[k])
            if done:
                log(f"{what}: reusing {folder}")
            elif recorded is not None:
                log(f"{what}: recorded in {ledger} (checkpoint not here)")
                records[k] = recorded  # nothing new: the results are written once, below
                continue
            elif not train:
                log(f"{what}: not trained yet; left out")
                continue
            else:
                lock = claim(folder)
                if lock is None:
                    waiting.append(k)
                    continue
                try:
                    log(f"{what}: training into {folder}")
                    train_fn(
                        configs[k],
                        folder,
                        data_dir=data_dir,
                        runs=spec.runs_dir,
                        progress=progress,
                        # A dev-only suite (tuning) never scores the test split.
                        evaluate_test=spec.split == "test",
                    )
                finally:
                    lock.unlink(missing_ok=True)
            records[k] = finish(k, folder, done)
            if not done:  # a new run: the results so far, in case the suite stops here
                write_results()
        if waiting and len(waiting) == len(pending):  # all left are someone else's: wait
            log(f"{len(waiting)} run(s) being trained by another process; waiting")
            time.sleep(poll_s)
        pending = waiting
    write_results()
    return result
