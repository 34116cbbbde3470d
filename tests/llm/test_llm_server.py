"""The gpt backend end to end: the real openai client against a real llama_cpp.server (SmolLM2)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from cdlm.config import LLMConfig
from cdlm.llm.base import Message
from cdlm.llm.gpt import GptBackend
from cdlm.llm.structured import Request


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # loopback: placeholder key is used
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


class Kind(BaseModel):
    type: Literal["person", "location", "organisation", "other"]
    mention: str = Field(max_length=24)


def ask(mention: str, text: str) -> list[Message]:
    return [
        Message(role="system", content="You classify named entities."),
        Message(role="user", content=f"In '{text}', what type of entity is '{mention}'?"),
    ]


def test_gpt_backend_against_llama_cpp_server(llama_server):
    cfg = LLMConfig(backend="gpt", model="smollm2", base_url=llama_server, max_tokens=60)
    backend = GptBackend(cfg)
    assert backend.schema_in_request  # loopback: the server grammar-constrains on the schema
    out = backend.complete_many(
        [Request(ask("Paris", "Marie Curie moved to Paris."), Kind, "srv"),
         Request(ask("Alan Turing", "Alan Turing worked in Manchester."), Kind, "srv")]
    )  # fmt: skip
    for result in out:
        assert isinstance(result.value, Kind), result
        assert result.usage.prompt_tokens > 20 and result.usage.completion_tokens > 0
    assert backend.usage.summary()["srv"].requests == 2


def test_prompt_longer_than_the_server_context_is_an_overflow(llama_server):
    """The server's 400 ``context_length_exceeded`` becomes ContextOverflowError, which the
    reasoning stages turn into a counted per-sentence fallback instead of a stopped run."""
    from cdlm.errors import ContextOverflowError

    long_text = "Marie Curie moved from Warsaw to Paris. " * 250  # about 2,500 tokens > 2,048
    backend = GptBackend(LLMConfig(backend="gpt", model="smollm2", base_url=llama_server))
    with pytest.raises(ContextOverflowError, match="context"):
        backend.complete(ask("Paris", long_text), Kind)


def test_ping_through_the_cli(llama_server):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "cdlm", "llm", "ping", "--llm", "gpt", "--base-url", llama_server,
         "--model", "smollm2"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "model:    smollm2" in proc.stdout
    assert '"entities": [' in proc.stdout.split("answer:")[1]


def test_choice_probabilities_from_the_servers_logprobs(llama_server):
    """``logprobs=True`` asks llama_cpp.server for each answer token's top_logprobs: every
    letter field gets a distribution over exactly its offered letters, summing to 1, whose
    argmax is the letter the server answered; the same request from the cache keeps them."""
    from choice_prompt import CHOICE, Pick

    from cdlm.llm.cache import AnswerCache
    from cdlm.llm.choice import choice_layout

    cfg = LLMConfig(backend="gpt", model="smollm2", base_url=llama_server, max_tokens=40)
    backend = GptBackend(cfg, AnswerCache(Path(tempfile.mkdtemp(prefix="cdlm_choice_"))))
    result = backend.complete(CHOICE, Pick, stage="choice", logprobs=True)
    assert result.probs is not None
    for name, options in choice_layout(Pick).fields:
        dist = result.probs[name]
        assert list(dist) == list(options)
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(dist, key=dist.get) == getattr(result.value, name)
        assert sum(p > 0 for p in dist.values()) >= 2  # read from the model, not one-hot
    again = backend.complete(CHOICE, Pick, stage="choice", logprobs=True)
    assert again.usage.cache_hit and again.probs == result.probs
    plain = backend.complete(CHOICE, Pick, stage="choice")  # another cache entry, no probs
    assert not plain.usage.cache_hit and plain.probs is None
