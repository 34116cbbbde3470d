"""Tagger alone vs tagger + LLM reasoning on seeded CrossNER subsets; writes evals/results/.

Same measurement as ``cdlm eval llm --llm llama --calibrate``, with the knobs a benchmark needs: a
fresh answer cache by default (so the first run's cost is real and the cached re-run's ratio is
honest) and dotted config overrides.

    python evals/bench_reasoning.py --checkpoint runs/politics__baseline__seed1 \\
        --subset 200 --dev-subset 60 --naive-subset 8 --seed 1

``--serve-smollm`` starts ``python -m llama_cpp.server`` with the embedded SmolLM2 on a free
loopback port and runs the ``gpt`` backend (the real ``openai`` client) against it:

    python evals/bench_reasoning.py --checkpoint runs/politics__baseline__seed1 --serve-smollm \
        --subset 20 --no-calibrate --set routing.budget=0.25

The naive pipeline costs about a minute per sentence with SmolLM2 on a 2-core CPU, so 200
sentences do not fit one session: run it in ranges (``--naive-start 0 --naive-subset 50``, then
``--naive-start 50`` ...), each a fresh, uninterrupted, separately timed run, and combine the
results with ``evals/merge_naive.py``.

Writes ``evals/results/<domain>__llm-<backend>__seed<N>.json`` and ``.md`` (with provenance).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from cdlm.config import load_config, parse_overrides
from cdlm.errors import CdlmError
from cdlm.experiments.llm_eval import llm_eval, write_llm_results


def smollm_server(log_path: Path):
    """``python -m llama_cpp.server`` with the embedded SmolLM2 on 127.0.0.1; yields base_url."""
    from cdlm.llm.embedded import embedded_gguf_path
    from cdlm.llm.server import local_server

    return local_server(embedded_gguf_path(), log_path, n_ctx=4096)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--backend", default="llama", choices=["llama", "gpt"])
    ap.add_argument("--model", default=None, help="GGUF path or API model name")
    ap.add_argument("--base-url", default=None)
    ap.add_argument("--subset", type=int, default=200, help="seeded test subset")
    ap.add_argument("--dev-subset", type=int, default=None, help="routing.calibration_sentences")
    ap.add_argument("--shares", default=None, help="routing.calibration_shares, e.g. 0,0.05,0.1")
    ap.add_argument("--naive-subset", type=int, default=0, help="naive pipeline on N sentences")
    ap.add_argument(
        "--naive-start",
        type=int,
        default=0,
        help="first test subset sentence of the naive range (ranges merge with merge_naive.py)",
    )
    ap.add_argument("--no-calibrate", action="store_true", help="use routing.* from the config")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", default=None, help="answer cache [default: a fresh temp dir]")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, JSON value, e.g. --set reasoning.experts=3",
    )
    ap.add_argument("--results-dir", default="evals/results")
    ap.add_argument("--name", default="", help="suffix of the results file name")
    ap.add_argument(
        "--serve-smollm",
        action="store_true",
        help="gpt backend against a local llama_cpp.server running SmolLM2",
    )
    args = ap.parse_args()
    try:
        if args.serve_smollm:
            log = Path(tempfile.mkdtemp(prefix="cdlm_server_")) / "server.log"
            with smollm_server(log) as base_url:
                args.backend, args.base_url, args.model = "gpt", base_url, args.model or "smollm2"
                run(args)
        else:
            run(args)
    except CdlmError as exc:  # one line, as the CLI prints it
        sys.exit(f"error: {exc}")


def run(args: argparse.Namespace) -> None:

    overrides: dict[str, object] = {
        "llm.backend": args.backend,
        "llm.model": args.model,
        "llm.base_url": args.base_url,
        "llm.cache_dir": args.cache_dir or tempfile.mkdtemp(prefix="cdlm_bench_cache_"),
        "routing.calibration_sentences": args.dev_subset,
        "routing.calibration_shares": (
            [float(s) for s in args.shares.split(",")] if args.shares else None
        ),
    }
    cfg = load_config(None, overrides | parse_overrides(args.set))
    result = llm_eval(
        args.checkpoint,
        cfg,
        subset=args.subset,
        seed=args.seed,
        calibrate_routing=not args.no_calibrate,
        naive_subset=args.naive_subset,
        naive_start=args.naive_start,
    )
    path = write_llm_results(result, Path(args.results_dir), args.name)
    print(path.with_suffix(".md").read_text(encoding="utf-8"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
