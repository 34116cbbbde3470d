#!/usr/bin/env bash
# Baseline ("pre-train then fine-tune", docs/DESIGN.md) with the embedded MiniLM encoder on all five
# CrossNER domains: one CoNLL-2003 source pre-training (cached in runs/source/, reused by every
# domain), five target fine-tunings, test-split evaluation files, then the throughput benchmark.
#
#   bash evals/run_baseline.sh            # seed 1, torch's default thread count
#   SEED=2 THREADS=1 bash evals/run_baseline.sh
#
# Results: evals/results/<domain>__baseline__seed<N>__test.{json,md} (F1, per-type table,
# sentences/s, and the training wall times taken from the checkpoint's scores.json) and
# evals/results/bench_tagger.json. Checkpoints: runs/<domain>__baseline__seed<N>/.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-1}
THREADS=${THREADS:-}
DOMAINS=${DOMAINS:-politics science music literature ai}
threads=(${THREADS:+--threads "$THREADS"})

for domain in $DOMAINS; do
    cdlm train --target "$domain" --variant baseline --seed "$SEED" "${threads[@]}"
    cdlm eval --checkpoint "runs/${domain}__baseline__seed${SEED}" --split test
done
python evals/bench_tagger.py --checkpoint "runs/politics__baseline__seed${SEED}" "${threads[@]}"
