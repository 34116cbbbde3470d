#!/usr/bin/env bash
# Entity-bias probe (issue 4) for several variants on the five CrossNER domains, then one
# side-by-side table. Needs the suite's checkpoints (cdlm eval --suite evals/crossner.toml).
#
#   bash evals/run_probes.sh                          # baseline and full, seed 1, 150 sentences
#   VARIANTS="baseline gcn causal full" LIMIT=300 bash evals/run_probes.sh
#
# Results: evals/results/probe__<domain>__<variant>.json (per type, examples) and
# evals/results/probe_table.{json,md}.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-1}
LIMIT=${LIMIT:-150}
VARIANTS=${VARIANTS:-baseline full}
DOMAINS=${DOMAINS:-politics science music literature ai}
files=()
for domain in $DOMAINS; do
    for variant in $VARIANTS; do
        cdlm probe --checkpoint "runs/${domain}__${variant}__seed${SEED}" \
            --input "${domain}/test" --limit "$LIMIT" > /dev/null
        files+=("evals/results/probe__${domain}__${variant}.json")
    done
done
python evals/probe_table.py "${files[@]}" --out evals/results/probe_table
