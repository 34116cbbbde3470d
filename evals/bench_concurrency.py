"""Concurrency of the LLM stage: wall time of the reasoning stages over routed sentences at
``llm.concurrency`` 1 and N, against a loopback OpenAI-compatible server whose fixed
per-request latency overlaps requests (as the OpenAI API and vLLM do).

The server is the test suite's fault server (``tests/llm_fault_server.py``): every request
waits ``--latency`` seconds, then gets a valid instance of the JSON schema it sent, its choices
picked from a hash of the request -- the same request always gets the same answer, whatever the
order requests arrive in, and different experts disagree, so second rounds and self-checks
happen. The sentences are the first ``--sentences`` of the seeded test subset that have a
candidate, tagged by ``--checkpoint``, every candidate routed (the naive pipeline). The gpt
backend runs without an answer cache. Both runs must give the same outcomes (checked; the
script fails otherwise), and the server's most requests in flight at once is recorded.

    python evals/bench_concurrency.py --checkpoint runs/politics__baseline__seed1 \\
        --sentences 20 --latency 0.5 --concurrency 4

Writes ``evals/results/bench_concurrency.json`` and ``.md`` (command, config, commit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the loopback fault server of the LLM tests

from llm_fault_server import Step, running, schema_answer  # noqa: E402

from cdlm.config import CdlmConfig, load_config, parse_overrides  # noqa: E402
from cdlm.errors import CdlmError  # noqa: E402
from cdlm.results import write_results  # noqa: E402


def outcome_key(outcome: Any) -> list[Any]:
    """What must not change with concurrency: entities, decisions, fallbacks, trace."""
    return [
        [(e.start, e.end, e.label, round(e.score, 6), e.source) for e in outcome.entities],
        [(c.id, before, after) for c, before, after in outcome.changes],
        outcome.fallbacks,
        outcome.trace,
    ]


def run_once(cfg: CdlmConfig, views: list[Any], types: list[str], domain: str) -> dict[str, Any]:
    from cdlm.experiments.llm_eval import run_pipeline
    from cdlm.llm.gpt import GptBackend
    from cdlm.reasoning.routing import Router
    from cdlm.reasoning.stages import make_task

    task = make_task(cfg, domain, types, backend=GptBackend(cfg.llm, cache=None))
    outcomes, stats = run_pipeline(task, Router(threshold=1.0), views, "reasoning")
    return {"stats": stats, "outcomes": [outcome_key(o) for o in outcomes]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--sentences", type=int, default=20, help="routed sentences")
    ap.add_argument("--latency", type=float, default=0.5, help="seconds per request")
    ap.add_argument("--concurrency", type=int, default=4, help="compared against 1")
    ap.add_argument("--subset", type=int, default=200, help="seeded test subset drawn from")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON)"
    )
    ap.add_argument("--out", type=Path, default=Path("evals/results/bench_concurrency.json"))
    args = ap.parse_args()
    try:
        record = bench(args)
    except CdlmError as exc:
        sys.exit(f"error: {exc}")
    write_results(args.out, record, markdown(record))
    print(markdown(record))
    print(f"wrote {args.out}")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from cdlm.data.bio import OUTSIDE
    from cdlm.data.registry import load_split
    from cdlm.experiments.llm_eval import seeded_subset, tagger_views
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp

    overrides = parse_overrides(args.set)
    base = load_config(None, overrides)
    model = Tagger.load(args.checkpoint)
    domain = str(model.config.train.target)
    types = list(dict.fromkeys(lab[2:] for lab in model.labels if lab != OUTSIDE))
    test = seeded_subset(load_split(domain, "test", args.data_dir), args.subset, args.seed)
    views = [v for v in tagger_views(model, test, base) if v.cands][: args.sentences]

    runs: dict[int, dict[str, Any]] = {}
    with running(Step(content=schema_answer, delay=args.latency)) as server:
        for concurrency in (1, args.concurrency):
            server.max_in_flight, before = 0, server.count
            cfg = load_config(
                None,
                {
                    **overrides,
                    "llm.backend": "gpt",
                    "llm.model": "latency-server",
                    "llm.base_url": server.base_url,
                    "llm.concurrency": concurrency,
                },
            )
            run = run_once(cfg, views, types, domain)
            run["requests"] = server.count - before
            run["max_in_flight"] = server.max_in_flight
            runs[concurrency] = run
    serial, parallel = runs[1], runs[args.concurrency]
    if serial["outcomes"] != parallel["outcomes"]:
        raise CdlmError(f"outcomes differ between concurrency 1 and {args.concurrency}")
    config = cfg.model_dump(mode="json")
    config["llm"]["base_url"] = "http://127.0.0.1:<port>/v1"  # a fresh port every run
    rows = {
        str(c): {
            "wall_seconds": r["stats"].wall_seconds,
            "requests": r["requests"],
            "calls": r["stats"].calls,
            "max_in_flight": r["max_in_flight"],
            "sentences_per_second": len(views) / max(r["stats"].wall_seconds, 1e-9),
        }
        for c, r in runs.items()
    }
    return {
        "checkpoint": args.checkpoint,
        "domain": domain,
        "sentences": len(views),
        "candidates": sum(len(v.cands) for v in views),
        "latency_s": args.latency,
        "runs": rows,
        "speedup": serial["stats"].wall_seconds / max(parallel["stats"].wall_seconds, 1e-9),
        "same_outcomes": True,
        "provenance": stamp(seed=args.seed, config=config),
    }


def markdown(r: dict[str, Any]) -> str:
    p = r["provenance"]
    (c1, cn) = r["runs"]
    lines = [
        "# Concurrency of the LLM stage (gpt backend, loopback server with fixed latency)",
        "",
        f"Command: `{p['command']}`  ",
        f"Commit: {p['commit']}, seed {p['seed']}, checkpoint `{r['checkpoint']}`  ",
        f"Machine: {p['machine']}",
        "",
        f"{r['sentences']} routed {r['domain']} test sentences ({r['candidates']} candidates, "
        f"every one asked), {r['latency_s']} s per request; vote "
        f"`{p['config']['reasoning']['vote']}`, {p['config']['reasoning']['experts']} experts.",
        "",
        "| llm.concurrency | wall s | requests | most in flight | sentences/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in (c1, cn):
        row = r["runs"][c]
        lines.append(
            f"| {c} | {row['wall_seconds']:.2f} | {row['requests']} | {row['max_in_flight']} | "
            f"{row['sentences_per_second']:.2f} |"
        )
    lines += [
        "",
        f"Wall time, concurrency {c1} / concurrency {cn}: **{r['speedup']:.2f}x**; the same "
        "outcomes at both (checked).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
