"""Early-stopping rules replayed on recorded dev curves (issue 14 item 1): for each run of a
suite results file and each (patience, min_delta), the epoch the rule stops at, the best epoch
and its dev F1, and the wall time up to the stop. A rule is replayed only as far as the run was
trained: when it would train past the recorded history the row says so ("needs more").

The dev curve of a run does not depend on the stopping rule (only on the schedule), so this
costs no training; the schedule itself is compared by real runs (evals/tune/convergence.toml).

    python evals/tune/stopping.py evals/results/tune_convergence.json \
        --patience 2,3,4 --min-delta 0,0.002,0.005 --out evals/results/tune_stopping
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def replay(history: list[dict], patience: int, min_delta: float) -> dict:
    """What ``cdlm.experiments.train.fit``'s rule does on this dev curve."""
    best_epoch, best_f1 = 0, -1.0
    gain_epoch, gain_f1 = 0, -1.0
    seconds = 0.0
    for h in history:
        epoch, f1 = h["epoch"], h["dev_f1"]
        seconds += h.get("seconds", 0.0)
        if f1 > best_f1:
            best_epoch, best_f1 = epoch, f1
        if f1 > gain_f1 + min_delta:
            gain_epoch, gain_f1 = epoch, f1
        if epoch - gain_epoch >= patience:
            return {"stop": epoch, "best": best_epoch, "dev_f1": best_f1, "seconds": seconds}
    return {"stop": None, "best": best_epoch, "dev_f1": best_f1, "seconds": seconds}


def main() -> None:
    from cdlm.provenance import stamp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a suite results JSON (its runs' checkpoints)")
    ap.add_argument("--patience", default="2,3,4")
    ap.add_argument("--min-delta", default="0,0.002,0.005")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    suite = json.loads(args.results.read_text(encoding="utf-8"))
    rows = []
    for run in suite["runs"]:
        scores = json.loads((Path(run["checkpoint"]) / "scores.json").read_text("utf-8"))
        history = scores["history"]
        cap = (scores.get("provenance") or {}).get("config", {}).get("train", {})
        cap = cap.get("target_epochs")
        for patience in [int(x) for x in args.patience.split(",")]:
            for delta in [float(x) for x in args.min_delta.split(",")]:
                r = replay(history, patience, delta)
                ran_out = r["stop"] is None
                at_cap = ran_out and len(history) == cap
                rows.append(
                    {
                        "variant": run["variant"],
                        "domain": run["domain"],
                        "patience": patience,
                        "min_delta": delta,
                        "stop": r["stop"] or len(history),
                        "status": "cap" if at_cap else "needs more" if ran_out else "stopped",
                        "best_epoch": r["best"],
                        "best_is_last": r["best"] == (r["stop"] or len(history)),
                        "dev_f1": r["dev_f1"],
                        "minutes": r["seconds"] / 60,
                    }
                )
    prov = stamp()
    lines = [
        f"# Early-stopping rules replayed on the dev curves of `{args.results}`",
        "",
        "stop = the epoch the rule ends training (status: stopped by the rule, cap = the epoch "
        "budget, needs more = the run was stopped earlier by its own rule); min_delta in F1 "
        "(fraction); minutes = training + dev evaluation up to the stop.",
        "",
        "| variant | domain | patience | min_delta | stop | status | best epoch | dev F1 "
        "| minutes |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['domain']} | {r['patience']} | {r['min_delta']} "
            f"| {r['stop']} | {r['status']} | {r['best_epoch']} | {100 * r['dev_f1']:.2f} "
            f"| {r['minutes']:.1f} |"
        )
    lines += ["", f"- command: `{prov['command']}`", f"- commit: `{prov['commit']}`"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"source": str(args.results), "rows": rows, "provenance": prov}, indent=2)
        + "\n",
        "utf-8",
    )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", "utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
