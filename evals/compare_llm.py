"""Old and new LLM pipelines side by side in one results file, read from their results files.

Every figure comes from the ``evals/bench_reasoning.py`` results files named on the command line
(none is typed in here). Two tables:

- ``--llama LABEL=FILE`` (two or more): naive route-everything runs with the embedded model on
  the same test sentences. The first is the reference; every other must have been run on the
  same sentences with the same tagger, which is checked on the stored per-sentence gold and
  tagger tags (identical tags on all sentences: the same checkpoint, in effect). Each row also
  shows its cached re-run (the backend calls it still made: 0 when every answer was cached).
- ``--server LABEL=FILE`` (optional): the ``gpt`` backend against ``llama_cpp.server``, the
  configured routing of each file (same test subset, checked on the tagger's F1).

Costs are per routed sentence. The goals of issue 17 are checked for every non-reference llama
row against the reference.

    python evals/compare_llm.py \\
        --llama old=evals/results/politics__llm-llama-naive-200__seed1.json \\
        --llama choice=evals/results/politics__llm-llama-choice-200__seed1.json \\
        --server old=evals/results/politics__llm-gpt-server20-default__seed1.json \\
        --server choice=evals/results/politics__llm-gpt-server20-choice__seed1.json \\
        --out evals/results/politics__llm-cost__seed1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cdlm.errors import CdlmError, ConfigError
from cdlm.provenance import stamp
from cdlm.results import write_results

# Issue 17's goals for the embedded model, route everything: (measure, at most / at least)
GOALS = {
    "tokens_per_routed": ("<=", 1500),
    "seconds_per_routed": ("<=", 12.0),
    "calls_per_routed": ("<=", 3.0),
    "f1": (">=", "reference"),
    "fallbacks": ("<=", "reference"),
}


def read(spec: str) -> tuple[str, Path, dict[str, Any]]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise ConfigError(f"{spec!r}: expected LABEL=FILE")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read a results file ({exc})") from None
    return label, Path(path), data


def row(label: str, path: Path, data: dict[str, Any], which: str) -> dict[str, Any]:
    """Per-routed-sentence costs and the effect of one pipeline run of a results file."""
    stats = data[f"{which}_stats"]
    scores = data[which]
    if stats is None or scores is None:
        raise ConfigError(f"{path}: no {which} run in this results file")
    routed = max(stats["routed"], 1)
    usage = stats["usage"]
    cached = data.get(f"{which}_cached_stats") if which == "naive" else None
    reasoning = data["config"]["reasoning"]
    return {
        "label": label,
        "file": str(path),
        "command": data["provenance"].get("command"),
        "commit": data["provenance"].get("commit"),
        "vote": reasoning.get("vote", "scores"),  # files before issue 17 had the scores vote
        "sentences": stats["sentences"],
        "routed": stats["routed"],
        "calls_per_routed": stats["calls"] / routed,
        "prompt_tokens_per_routed": stats["prompt_tokens"] / routed,
        "completion_tokens_per_routed": stats["completion_tokens"] / routed,
        "tokens_per_routed": (stats["prompt_tokens"] + stats["completion_tokens"]) / routed,
        "seconds_per_routed": stats["wall_seconds"] / routed,
        "f1": 100 * scores["f1"],
        "tagger_f1": 100 * (data["naive_tagger"] if which == "naive" else data["tagger"])["f1"],
        "fallbacks": stats["fallbacks"],
        "dropped_ungrounded": stats["dropped_ungrounded"],
        "changed_better": stats["changed_better"],
        "changed_worse": stats["changed_worse"],
        "calls_by_stage": {
            stage: s["calls"] / routed for stage, s in usage.items() if stage != "total"
        },
        "cached_rerun_calls": None if cached is None else cached["calls"],
        "cached_rerun_seconds_per_routed": None
        if cached is None
        else cached["wall_seconds"] / routed,
    }


def check_same_sentences(ref: tuple[str, Path, dict], other: tuple[str, Path, dict]) -> None:
    for key in ("naive_gold_tags", "naive_tagger_tags"):
        if ref[2].get(key) is None or other[2].get(key) != ref[2][key]:
            what = "test sentences" if key == "naive_gold_tags" else "tagger output"
            raise ConfigError(f"{other[1]}: not the same {what} as {ref[1]} ({key} differ)")


def goals(reference: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for measure, (how, bound) in GOALS.items():
        limit = reference[measure] if bound == "reference" else bound
        value = new[measure]
        met = value <= limit if how == "<=" else value >= limit
        out[measure] = {"value": value, "goal": f"{how} {limit:g}", "met": met}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama", action="append", default=[], metavar="LABEL=FILE")
    ap.add_argument("--server", action="append", default=[], metavar="LABEL=FILE")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        record = compare(args)
    except CdlmError as exc:
        sys.exit(f"error: {exc}")
    write_results(args.out, record, markdown(record))
    print(markdown(record))
    print(f"wrote {args.out}")


def compare(args: argparse.Namespace) -> dict[str, Any]:
    if len(args.llama) < 2:
        raise ConfigError("--llama: give the reference run and at least one other")
    llama = [read(s) for s in args.llama]
    for other in llama[1:]:
        check_same_sentences(llama[0], other)
    llama_rows = [row(label, path, data, "naive") for label, path, data in llama]
    server = [read(s) for s in args.server]
    server_rows = [row(label, path, data, "routed") for label, path, data in server]
    if len({(r["sentences"], round(r["tagger_f1"], 6)) for r in server_rows}) > 1:
        raise ConfigError("--server: the files are not on the same test subset (tagger F1 differ)")
    return {
        "llama": llama_rows,
        "server": server_rows,
        "goals": {r["label"]: goals(llama_rows[0], r) for r in llama_rows[1:]},
        "provenance": stamp(),
    }


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| run | vote | routed | calls | prompt tok | completion tok | tokens | s | F1 "
        "(tagger) | fallbacks | better/worse | cached re-run calls |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cached = "-" if r["cached_rerun_calls"] is None else str(r["cached_rerun_calls"])
        lines.append(
            f"| {r['label']} | {r['vote']} | {r['routed']}/{r['sentences']} | "
            f"{r['calls_per_routed']:.2f} | {r['prompt_tokens_per_routed']:,.0f} | "
            f"{r['completion_tokens_per_routed']:,.0f} | {r['tokens_per_routed']:,.0f} | "
            f"{r['seconds_per_routed']:.2f} | {r['f1']:.2f} ({r['tagger_f1']:.2f}) | "
            f"{r['fallbacks']} | {r['changed_better']}/{r['changed_worse']} | {cached} |"
        )
    return lines


def _sources(rows: list[dict[str, Any]]) -> list[str]:
    return [f"- {r['label']}: `{r['file']}` (`{r['command']}` at {r['commit']})" for r in rows]


def markdown(record: dict[str, Any]) -> str:
    p = record["provenance"]
    lines = [
        "# LLM stage cost: old and new pipelines side by side",
        "",
        f"Command: `{p['command']}`  ",
        f"Commit: {p['commit']}",
        "",
        "Costs per routed sentence. Every figure is read from the results files below.",
        "",
        "## Embedded SmolLM2 (llama.cpp), route everything, same sentences and tagger",
        "",
        *_table(record["llama"]),
        "",
        "Calls per routed sentence by stage: "
        + "; ".join(
            f"{r['label']}: "
            + ", ".join(f"{s} {v:.2f}" for s, v in sorted(r["calls_by_stage"].items()))
            for r in record["llama"]
        ),
        "",
        *_sources(record["llama"]),
    ]
    for label, checks in record["goals"].items():
        lines += ["", f"Goals (issue 17), {label} against {record['llama'][0]['label']}:", ""]
        lines += [
            f"- {m}: {c['value']:,.2f} (goal {c['goal']}): {'met' if c['met'] else 'NOT met'}"
            for m, c in checks.items()
        ]
    if record["server"]:
        lines += [
            "",
            "## gpt backend against llama_cpp.server (SmolLM2), configured routing",
            "",
            *_table(record["server"]),
            "",
            *_sources(record["server"]),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
