#!/usr/bin/env bash
# Entity-bias probe (issue 4) for several variants on the five CrossNER domains, then one
# side-by-side table. The checkpoints are the ones a suite's results file names (default: the
# final table, evals/results/crossner_final.json), so a run that went to a config-hashed folder
# is probed, not a stale default folder.
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
SUITE=${SUITE:-evals/results/crossner_final.json}
files=()
for domain in $DOMAINS; do
    for variant in $VARIANTS; do
        checkpoint=$(python - "$SUITE" "$domain" "$variant" "$SEED" <<'PY'
import json, sys
suite, domain, variant, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = json.load(open(suite, encoding="utf-8"))["runs"]
hits = [r["checkpoint"] for r in runs
        if (r["domain"], r["variant"], r["seed"]) == (domain, variant, seed)]
if not hits:
    sys.exit(f"{suite}: no run {domain}/{variant}/seed {seed}")
print(hits[0])
PY
)
        cdlm probe --checkpoint "$checkpoint" --input "${domain}/test" --limit "$LIMIT" > /dev/null
        files+=("evals/results/probe__${domain}__${variant}.json")
    done
done
python evals/probe_table.py "${files[@]}" --out evals/results/probe_table
