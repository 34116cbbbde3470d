"""Wall-time estimate of a suite before it runs (issue 14, phase 2), from measured runs.

Each planned run costs (epochs) x (seconds per epoch) + its extras. The seconds per epoch of a
domain and a kind of variant come from finished runs (their ``scores.json`` history), scaled
between domains by the work of an epoch (3 x train sentences for the forward + backward pass,
+ dev sentences for the evaluation). Kinds: plain (baseline, gcn*), views (causal, full: the
input-level counterfactual views), both with or without steps-matched FactMix (the same steps:
same cost) and FactMix as published (``-long``: an epoch is a pass over the augmented set).
Extras: the dev alpha sweep of the causal variants and the test evaluation.

    python evals/tune/estimate.py evals/crossner_final.toml \
        --measured evals/results/tune_modules.json evals/results/tune_factmix.json \
        --workers 2 --skip causal-both --out evals/results/crossner_final_estimate

The measurements were taken on a CPU shared with other jobs, two training processes at a time,
so they already include the slowdown of running two workers side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

# Sentences per split (CrossNER), for scaling an epoch between domains.
SIZES = {
    "politics": (200, 541, 651),
    "science": (200, 450, 543),
    "music": (100, 380, 465),
    "literature": (100, 400, 416),
    "ai": (100, 350, 431),
}


def work(domain: str) -> float:
    train, dev, _ = SIZES[domain]
    return 3 * train + dev


def kind(config: dict) -> str:
    views = config["causal"]["explicit"]
    long = config["augment"]["method"] == "factmix" and not config["augment"]["steps_matched"]
    return ("views" if views else "plain") + ("-long" if long else "")


def main() -> None:
    from cdlm.experiments.suite import load_suite, planned_runs, run_config
    from cdlm.provenance import stamp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("--measured", type=Path, nargs="+", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--long-factor", type=float, default=3.0, help="augmented / original set")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="measured variants that are not a recipe the suite runs",
    )
    args = ap.parse_args()

    # Measured: seconds per epoch-work unit, epochs run, per kind.
    per_unit: dict[str, list[float]] = {}
    epochs: dict[str, list[int]] = {}
    sweep_units: list[float] = []
    factmix_point: list[tuple[str, float]] = []
    plain_seconds: dict[str, float] = {}
    sources = []
    for path in args.measured:
        for run in json.loads(path.read_text(encoding="utf-8"))["runs"]:
            if run["variant"] in args.skip:
                continue
            folder = Path(run["checkpoint"])
            scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))["config"]
            k = kind(config)
            if config["augment"]["method"] == "factmix":
                # Its grid points are several fine-tunings: the mean point's time, against
                # the plain run of its domain below (more epochs to converge, the fills).
                points = len(scores["augment"]["grid"]["points"])
                factmix_point.append((run["domain"], scores["target_seconds"] / points))
                continue
            secs = [h["seconds"] for h in scores["history"]]
            # The median epoch: robust to an epoch that was paused for LLM work.
            per_unit.setdefault(k, []).append(statistics.median(secs) / work(run["domain"]))
            epochs.setdefault(k, []).append(len(secs))
            if k == "plain" and not config["fusion"]["enabled"]:
                plain_seconds[run["domain"]] = scores["target_seconds"]
            if k == "views":
                after = scores["target_seconds"] - sum(secs)  # the alpha sweep on dev
                sweep_units.append(max(after, 0.0) / SIZES[run["domain"]][1])
            sources.append(str(folder))
    if "plain" not in per_unit:
        raise SystemExit("no measured plain run")
    rate = {k: statistics.fmean(v) for k, v in per_unit.items()}
    rate.setdefault("views", rate["plain"] * 2.0)
    n_epochs = {k: statistics.fmean(v) for k, v in epochs.items()}
    n_epochs.setdefault("views", n_epochs["plain"])
    sweep = statistics.fmean(sweep_units) if sweep_units else 0.0
    eval_rate = rate["plain"] / 3  # a forward pass over one sentence, roughly
    factmix_factor = statistics.fmean(
        [t / plain_seconds[d] for d, t in factmix_point if d in plain_seconds] or [1.0]
    )

    spec = load_suite(args.suite)
    rows, total = [], 0.0
    for variant, domain, seed in planned_runs(spec):
        config = run_config(spec, variant, domain, seed).model_dump(mode="json")
        k = kind(config)
        base = k.removesuffix("-long")
        seconds_per_epoch = rate[base] * work(domain)
        if k.endswith("-long"):  # the train part of an epoch grows with the augmented set
            train, dev, _ = SIZES[domain]
            seconds_per_epoch = rate[base] * (3 * train * args.long_factor + dev)
        seconds = n_epochs[base] * seconds_per_epoch
        if base == "views":
            seconds += sweep * SIZES[domain][1]
        seconds += eval_rate * SIZES[domain][2]  # the test split, once
        if config["fusion"]["enabled"]:
            seconds *= 1.16  # bench_fusion: fusion's step time over the baseline's
        if config["augment"]["method"] == "factmix" and not k.endswith("-long"):
            seconds *= factmix_factor
        rows.append({"variant": variant, "domain": domain, "seed": seed, "minutes": seconds / 60})
        total += seconds
    wall = total / args.workers
    prov = stamp()
    lines = [
        f"# Wall-time estimate of `{args.suite}` ({len(rows)} runs, {args.workers} workers)",
        "",
        f"**{wall / 3600:.1f} h** of wall time ({total / 3600:.1f} worker-hours), from "
        f"{len(sources)} measured runs under the same load (two training processes on the "
        "shared CPU). Seconds per epoch-work unit (3 x train + dev sentences): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(rate.items()))
        + "; epochs per run: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(n_epochs.items()))
        + f"; alpha sweep {sweep:.3f} s per dev sentence; a steps-matched FactMix run takes "
        f"{factmix_factor:.2f}x its plain twin (one ratio point).",
        "",
        "| variant | domain | seed | minutes |",
        "|---|---|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['domain']} | {r['seed']} | {r['minutes']:.1f} |" for r in rows
    ]
    lines += ["", f"- command: `{prov['command']}`", f"- commit: `{prov['commit']}`"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "suite": str(args.suite),
        "workers": args.workers,
        "wall_hours": wall / 3600,
        "worker_hours": total / 3600,
        "rate": rate,
        "epochs": n_epochs,
        "sweep_seconds_per_dev_sentence": sweep,
        "factmix_factor": factmix_factor,
        "measured": sources,
        "runs": rows,
        "provenance": prov,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()
