"""The persistent answer cache: hits skip the backend, any change misses, no key is stored,
and an interrupted run resumes where it stopped."""

from __future__ import annotations

import uuid

import pytest
from llm_fault_server import Step

from cdlm.cli.llm import PingAnswer
from cdlm.config import LLMConfig
from cdlm.errors import LLMError
from cdlm.llm.base import LLMOutputError, Message
from cdlm.llm.cache import AnswerCache
from cdlm.llm.gpt import GptBackend
from cdlm.llm.structured import Request

SYSTEM = Message(role="system", content="You find named entities.")
USER = Message(role="user", content="Entities in: Marie Curie moved to Paris.")


def make(server, cache_dir, **cfg) -> GptBackend:
    base = dict(backend="gpt", base_url=server.base_url, retry_initial_s=0.01, max_retries=0)
    return GptBackend(LLMConfig(**{**base, **cfg}), AnswerCache(cache_dir))


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_hit_skips_backend_and_changes_miss(fault_server, tmp_path):
    backend = make(fault_server, tmp_path)
    first = backend.complete([SYSTEM, USER], PingAnswer, stage="s")
    again = backend.complete([SYSTEM, USER], PingAnswer, stage="s")
    assert fault_server.count == 1
    assert again.usage.cache_hit and again.usage.calls == 0 and again.value == first.value
    summary = backend.usage.summary()["s"]
    assert (summary.cache_hits, summary.cache_misses, summary.calls) == (1, 1, 1)

    edited = Message(role="system", content="You find named entities in news text.")
    backend.complete([edited, USER], PingAnswer)  # a changed template is a miss
    assert fault_server.count == 2
    make(fault_server, tmp_path, temperature=0.7).complete([SYSTEM, USER], PingAnswer)
    assert fault_server.count == 3  # a changed sampling parameter is a miss
    make(fault_server, tmp_path, model="other-model").complete([SYSTEM, USER], PingAnswer)
    assert fault_server.count == 4  # another model is a miss
    make(fault_server, tmp_path).complete([SYSTEM, USER], PingAnswer)
    assert fault_server.count == 4  # a new process/backend object still hits


def test_failed_answers_are_cached_until_more_attempts_are_allowed(fault_server, tmp_path):
    """A re-run falls back at once on a request that never validated (no second bill), unless
    it may now try harder (more repair retries) or failures are not cached."""
    fault_server.default = Step(content="nonsense")
    with pytest.raises(LLMOutputError, match="did not validate"):
        make(fault_server, tmp_path, repair_retries=0).complete([USER], PingAnswer, stage="s")
    assert fault_server.count == 1
    rerun = make(fault_server, tmp_path, repair_retries=0)
    with pytest.raises(LLMOutputError, match="did not validate") as caught:
        rerun.complete([USER], PingAnswer, stage="s")
    assert fault_server.count == 1  # served from the cache
    assert caught.value.usage.cache_hit and caught.value.usage.calls == 0
    assert rerun.usage.summary()["s"].failures == 1

    with pytest.raises(LLMOutputError):
        make(fault_server, tmp_path, repair_retries=1).complete([USER], PingAnswer, stage="s")
    assert fault_server.count == 3  # two attempts allowed now: asked again (answer + repair)

    fault_server.default = Step()  # the server behaves again
    fresh = make(fault_server, tmp_path, repair_retries=0, cache_failures=False)
    assert isinstance(fresh.complete([USER], PingAnswer, stage="s").value, PingAnswer)
    assert fault_server.count == 4  # not cached as a failure: asked, and now it validates


def test_api_key_never_reaches_the_cache(fault_server, tmp_path, monkeypatch):
    marker = f"sk-marker-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", marker)
    backend = make(fault_server, tmp_path)
    backend.complete([SYSTEM, USER], PingAnswer)
    backend.cache.close()
    assert fault_server.auth_headers == [f"Bearer {marker}"]  # the key was really used
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files, "cache wrote nothing"
    for path in files:
        assert marker.encode() not in path.read_bytes(), path


def test_interrupted_run_resumes_from_cache(fault_server, tmp_path):
    requests = [
        Request([USER, Message(role="user", content=f"Sentence {i}.")], PingAnswer, "r")
        for i in range(4)
    ]
    # The server dies after two answers: the run aborts with a one-line error ...
    fault_server.script = [Step(), Step()]
    fault_server.default = Step(status=500)
    with pytest.raises(LLMError):
        make(fault_server, tmp_path, concurrency=1).complete_many(requests)
    assert fault_server.count == 3
    # ... and the rerun only asks for the two answers it did not get.
    fault_server.default = Step()
    rerun = make(fault_server, tmp_path, concurrency=1)
    out = rerun.complete_many(requests)
    assert fault_server.count == 5
    assert [o.usage.cache_hit for o in out] == [True, True, False, False]
