"""Fixtures of the reasoning tests: the real SmolLM2 backend (loaded once per session, with a
fresh answer cache so every call really runs), a scripted backend for fault logic, and a sentence
with tagger candidates. The LLM tests' fault server (``tests/llm_fault_server.py``) is
importable here too, for runs through the real ``openai`` client."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel

from cdlm.config import LLMConfig, ReasoningConfig
from cdlm.llm.base import LLMOutputError, LLMResult, Message, Usage
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Candidate, Doc, extract_candidates
from cdlm.reasoning.stage import Task
from cdlm.reasoning.stages import load_prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))

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
    cfg = ReasoningConfig(
        experts=1, rounds=1, max_links=3, selfcheck_when="always", discovery_when="always"
    )
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
        self,
        messages: list[Message],
        schema: type[BaseModel],
        *,
        stage: str = "",
        logprobs: bool = False,
    ) -> LLMResult[Any]:
        """No log-probabilities: a choice answer's letters count as they are."""
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


LABELS = [
    "O",
    "B-politician",
    "I-politician",
    "B-person",
    "I-person",
    "B-politicalparty",
    "I-politicalparty",
]


def _probs(rows: list[dict[str, float]]) -> np.ndarray:
    out = np.zeros((len(rows), len(LABELS)))
    for i, row in enumerate(rows):
        for lab, p in row.items():
            out[i, LABELS.index(lab)] = p
    return out


def sentence(first: str = "Angela", last: str = "Merkel") -> tuple[Doc, list[Candidate]]:
    """A sentence with a hesitant tagger span and a likely-missed party."""
    doc = Doc.from_tokens([first, last, "led", "the", "CDU", "."])
    probs = _probs(
        [
            {"B-politician": 0.5, "B-person": 0.4, "O": 0.1},
            {"I-politician": 0.55, "I-person": 0.35, "O": 0.1},
            {"O": 0.97, "B-person": 0.03},
            {"O": 0.99, "B-person": 0.01},
            {"O": 0.5, "B-politicalparty": 0.45, "B-person": 0.05},
            {"O": 0.99, "B-person": 0.01},
        ]
    )
    return doc, extract_candidates(doc, probs, LABELS, top_k=2, missed_o_max=0.6)


@pytest.fixture
def doc_and_cands() -> tuple[Doc, list[Candidate]]:
    return sentence()
