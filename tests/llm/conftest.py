"""LLM test fixtures: SmolLM2 loaded once, a real llama_cpp.server, and a scripted fault server.

The fault server is the only fake: an OpenAI-shaped endpoint on 127.0.0.1 that answers each
request with the next scripted behaviour (429 with Retry-After, 500, a hang, broken JSON ...),
so every failure path of the real ``openai`` client plus our retry/repair layer is exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_fault_server import FaultServer, running

from cdlm.config import LLMConfig
from cdlm.llm.server import local_server


@pytest.fixture(scope="session")
def smollm_backend(smollm_path: Path):
    """The embedded SmolLM2 through llama.cpp, loaded once per session (no answer cache)."""
    from cdlm.llm.llama import LlamaBackend

    cfg = LLMConfig(
        backend="llama", model=str(smollm_path), n_ctx=2048, max_tokens=160, n_threads=1,
        schema_in_prompt=False,  # the grammar enforces the schema; fewer prompt tokens
    )  # fmt: skip
    return LlamaBackend(cfg, cache=None, notice=None)


@pytest.fixture(scope="session")
def llama_server(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m llama_cpp.server`` serving SmolLM2 on a free loopback port; yields base_url."""
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with local_server(smollm_path, log, n_ctx=2048, n_threads=1, startup_s=120) as base_url:
        yield base_url


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    with running() as state:
        yield state
