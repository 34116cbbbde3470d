"""Fixtures of the reasoning tests: the real SmolLM2 backend (loaded once per session, with a
fresh answer cache so every call really runs) and a scripted backend for fault logic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cdlm.config import LLMConfig, ReasoningConfig
from cdlm.llm.base import LLMOutputError, LLMResult, Message, Usage
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.stage import Task
from cdlm.reasoning.stages import load_prompts

POLITICS = ["politician", "person", "politicalparty", "organisation", "country", "location"]


@pytest.fixture(scope="session")
def smollm_backend(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from cdlm.llm.factory import make_backend

    cfg = LLMConfig(
        backend="llama",
        model=str(smollm_path),
        cache_dir=str(tmp_path_factory.mktemp("llm_cache")),
        max_tokens=256,
        # The JSON grammar already enforces the schema; leaving its text out of the prompt
        # halves the prompt tokens of these tests.
        schema_in_prompt=False,
    )
    return make_backend(cfg)


@pytest.fixture
def real_task(smollm_backend: Any) -> Task:
    cfg = ReasoningConfig(experts=1, rounds=1, max_links=3, max_reason_chars=40)
    return Task(smollm_backend, load_prompts(), cfg, "politics", POLITICS, UsageLog())


Script = Callable[[str, type[BaseModel], list[Message]], dict[str, Any] | None]


class ScriptedBackend:
    """An LLMBackend whose answers come from a function of (stage, schema, messages).

    The answer dict is validated by the stage's own schema, as a real backend's would be; a
    ``None`` answer raises :class:`LLMOutputError` like an unparseable model answer."""

    name = "scripted"
    model = "script"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, list[Message]]] = []

    def complete(
        self, messages: list[Message], schema: type[BaseModel], *, stage: str = ""
    ) -> LLMResult[Any]:
        self.requests.append((stage, messages))
        answer = self.script(stage, schema, messages)
        usage = Usage(stage=stage, calls=1, prompt_tokens=10, completion_tokens=5)
        if answer is None:
            raise LLMOutputError("scripted garbage", usage)
        return LLMResult(schema.model_validate(answer), usage)


@pytest.fixture
def scripted() -> Callable[..., Task]:
    def make(script: Script, **cfg: Any) -> Task:
        return Task(
            ScriptedBackend(script),
            load_prompts(),
            ReasoningConfig(**cfg),
            "politics",
            POLITICS,
            UsageLog(),
        )

    return make
