"""Merge naive-pipeline ranges run separately by ``bench_reasoning.py --naive-start`` into one
result: scores recomputed from the stored per-sentence tags, costs added up.

    python evals/merge_naive.py evals/results/politics__llm-llama-naive0__seed1.json \\
        evals/results/politics__llm-llama-naive50__seed1.json ... --name naive200

Refuses ranges that overlap, leave a gap, or differ in checkpoint, model, seed or config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from cdlm.errors import CdlmError
from cdlm.experiments.llm_eval import LLMEvalResult, merge_naive_runs, write_llm_results


def read_result(path: Path) -> LLMEvalResult:
    """One results file, or exit with a one-line error that names it."""
    try:
        return LLMEvalResult.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        sys.exit(f"error: {path}: {exc.strerror}")
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "file"
        sys.exit(f"error: {path}: not an LLM eval result ({where}: {err['msg']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="+", type=Path, help="results JSON files of naive ranges")
    ap.add_argument("--results-dir", default="evals/results")
    ap.add_argument("--name", default="naive-merged", help="suffix of the results file name")
    args = ap.parse_args()
    from cdlm.provenance import stamp

    parts = [read_result(p) for p in args.parts]
    try:
        merged = merge_naive_runs(parts, stamp(seed=parts[0].seed, config=parts[0].config))
    except CdlmError as exc:
        sys.exit(f"error: {exc}")
    path = write_llm_results(merged, Path(args.results_dir), args.name)
    print(path.with_suffix(".md").read_text(encoding="utf-8"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
