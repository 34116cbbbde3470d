"""The llama backend with the real embedded SmolLM2 through llama.cpp."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from cdlm.cli.llm import PingAnswer
from cdlm.errors import ContextOverflowError, LLMError, ModelNotFoundError
from cdlm.llm.base import Message
from cdlm.llm.cache import AnswerCache
from cdlm.llm.embedded import embedded_gguf_path
from cdlm.llm.llama import check_gguf, gguf_identity
from cdlm.llm.structured import Request

TEXT = "Marie Curie moved from Warsaw to Paris."


class Kind(BaseModel):
    """A deliberately small answer: tests pay for every generated token on 2 shared cores."""

    type: Literal["person", "location", "organisation", "other"]
    mention: str = Field(max_length=24)


def ask(mention: str, text: str = TEXT) -> list[Message]:
    return [
        Message(role="system", content="You classify named entities."),
        Message(role="user", content=f"In '{text}', what type of entity is '{mention}'?"),
    ]


def test_structured_answer_validates(smollm_backend):
    result = smollm_backend.complete(ask("Paris"), Kind, stage="kind")
    assert isinstance(result.value, Kind)
    assert len(result.value.mention) <= 24
    assert result.usage.prompt_tokens > 20 and 0 < result.usage.completion_tokens <= 40
    assert result.usage.calls >= 1 and not result.usage.cache_hit
    assert smollm_backend.usage.summary()["kind"].completion_tokens >= 1


def test_cache_hit_without_calling_llama(smollm_backend, tmp_path, monkeypatch):
    generated = []  # every generation llama.cpp ran
    real = smollm_backend._generate
    monkeypatch.setattr(
        smollm_backend, "_generate", lambda *a, **k: generated.append(a) or real(*a, **k)
    )
    monkeypatch.setattr(smollm_backend, "cache", AnswerCache(tmp_path))
    requests = [Request(ask("Warsaw"), Kind, "c")] * 2
    first, second = smollm_backend.complete_many(requests)
    assert not first.usage.cache_hit and second.usage.cache_hit
    assert second.usage.calls == 0 and second.value == first.value
    assert len(generated) == first.usage.calls  # the hit ran no generation at all


def test_embedded_path_and_identity(smollm_path, tmp_path):
    assert embedded_gguf_path() == smollm_path
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(smollm_path.read_bytes())
    # The identity follows the content, not the path (a copied file keeps its cache).
    assert gguf_identity(copy) == gguf_identity(smollm_path)
    with copy.open("r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    assert gguf_identity(copy) != gguf_identity(smollm_path)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelNotFoundError, match="GGUF model file not found"):
        check_gguf(tmp_path / "missing.gguf")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(LLMError, match=r"not a GGUF file \(starts with b'PK"):
        check_gguf(fake)


def test_context_too_small_says_by_how_much(smollm_backend):
    long_text = "Marie Curie moved from Warsaw to Paris. " * 250  # about 2,500 tokens
    with pytest.raises(
        ContextOverflowError, match=r"does not fit the 2048-token context \(short by \d+ tok"
    ):
        smollm_backend.complete(ask("Paris", long_text), PingAnswer)
    assert smollm_backend.count_prompt_tokens(ask("Paris", long_text)) > 2048


def test_stage_budget_replaces_max_tokens(smollm_backend):
    """``llm.stage_max_tokens`` gives one stage its own answer budget: 4 tokens cut the JSON
    off (reported with that budget), while the other stages keep ``llm.max_tokens``."""
    from cdlm.llm.base import LLMOutputError

    cfg = smollm_backend.cfg
    smollm_backend.cfg = cfg.model_copy(
        update={"stage_max_tokens": {"tiny": 4}, "repair_retries": 0}
    )
    try:
        assert smollm_backend.max_tokens("tiny") == 4
        assert smollm_backend.max_tokens("kind") == cfg.max_tokens
        with pytest.raises(LLMOutputError, match=r"cut off at max_tokens=4") as err:
            smollm_backend.complete(ask("Paris"), Kind, stage="tiny")
        assert err.value.usage.completion_tokens <= 4
    finally:
        smollm_backend.cfg = cfg


def test_schema_goes_into_the_prompt_only_where_nothing_enforces_it(smollm_backend):
    """Default (None): llama leaves it out (its grammar constrains the answer), gpt states it."""
    from cdlm.config import LLMConfig
    from cdlm.llm.gpt import GptBackend

    cfg = smollm_backend.cfg
    smollm_backend.cfg = cfg.model_copy(update={"schema_in_prompt": None})
    try:
        assert smollm_backend.prepare(ask("Paris"), Kind) == ask("Paris")
    finally:
        smollm_backend.cfg = cfg
    url = "http://127.0.0.1:9/v1"
    json_mode = GptBackend(LLMConfig(backend="gpt", base_url=url, json_schema_in_request=False))
    sent = json_mode.prepare(ask("Paris"), Kind)
    assert '"mention"' in sent[0].content and sent[1:] == ask("Paris")[1:]
    in_request = GptBackend(LLMConfig(backend="gpt", base_url=url))  # loopback: schema sent
    assert in_request.prepare(ask("Paris"), Kind) == ask("Paris")


class Many(BaseModel):
    """An answer of about 100 tokens, so a small answer budget always cuts it off."""

    words: list[Literal["alpha", "beta"]] = Field(min_length=40, max_length=40)


def test_repair_turn_that_outgrows_the_context_is_a_cached_failure(smollm_backend, tmp_path):
    """The request fits, its answer is cut off, and the repair turn (request + cut answer +
    instruction) would not fit: that is a failed answer, cached, so a re-run makes no call --
    not a context overflow that is asked again, at full price, on every run."""
    from cdlm.llm.base import LLMOutputError
    from cdlm.llm.llama import LlamaBackend

    # A small context, so that filling it is a few seconds of prompt processing.
    small = smollm_backend.cfg.model_copy(update={"n_ctx": 512})
    smollm_backend = LlamaBackend(small, cache=None, notice=None)
    budget, n_ctx = 48, smollm_backend.n_ctx

    def padded(n_words: int) -> list[Message]:
        return ask("Paris", TEXT + " Paris" * n_words)

    lo, hi = 0, n_ctx  # most padding whose prompt still leaves room for the answer budget
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fits = smollm_backend.count_prompt_tokens(padded(mid)) + budget <= n_ctx
        lo, hi = (mid, hi) if fits else (lo, mid - 1)
    messages = padded(lo)
    assert n_ctx - budget - 8 <= smollm_backend.count_prompt_tokens(messages) <= n_ctx - budget

    cfg, cache = smollm_backend.cfg, smollm_backend.cache
    smollm_backend.cfg = cfg.model_copy(
        update={"stage_max_tokens": {"long": budget}, "repair_retries": 1}
    )
    smollm_backend.cache = AnswerCache(tmp_path)
    try:
        with pytest.raises(LLMOutputError, match="repair turn does not fit") as first:
            smollm_backend.complete(messages, Many, stage="long")
        assert first.value.usage.calls == 1 and first.value.usage.completion_tokens == budget
        with pytest.raises(LLMOutputError, match="cached") as again:
            smollm_backend.complete(messages, Many, stage="long")
        assert again.value.usage.cache_hit and again.value.usage.calls == 0
    finally:
        smollm_backend.cfg, smollm_backend.cache = cfg, cache
