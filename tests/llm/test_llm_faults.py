"""The gpt backend against a scripted fault server: every fault is retried, repaired or reported,
and the call counts prove nothing was lost or silently retried forever.

No test reads the clock: waits are checked as the sleeps the retry loop asked for (recorded),
timeouts as the number of requests the server saw, parallelism as requests in flight at once.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from llm_fault_server import FaultServer, Step, refused_url

from cdlm.cli.llm import PingAnswer
from cdlm.config import LLMConfig
from cdlm.errors import LLMError
from cdlm.llm.base import LLMOutputError, Message
from cdlm.llm.gpt import GptBackend
from cdlm.llm.structured import REPAIR_INSTRUCTION, Request

MESSAGES = [Message(role="user", content="Entities in: Marie Curie moved to Paris.")]


def make(server: FaultServer, **cfg) -> GptBackend:
    defaults = dict(
        backend="gpt", model="fault-model", base_url=server.base_url, timeout_s=60.0,
        retry_initial_s=0.01, retry_max_s=0.05, max_retries=4, max_total_s=120.0,
    )  # fmt: skip
    return GptBackend(LLMConfig(**{**defaults, **cfg}))


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fault")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Every ``time.sleep`` of the test's own thread (the retry loop's waits), still slept."""
    real, main, asked = time.sleep, threading.current_thread(), []

    def sleep(seconds: float) -> None:
        if threading.current_thread() is main:
            asked.append(seconds)
        real(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return asked


def test_429_honours_retry_after(fault_server, sleeps):
    fault_server.script = [Step(status=429, headers={"Retry-After": "1"})]
    backend = make(fault_server)
    result = backend.complete(MESSAGES, PingAnswer, stage="t")
    assert result.value.entities[0].text == "Paris"
    assert fault_server.count == 2
    assert result.usage.retries == 1 and result.usage.calls == 2
    assert sleeps == [1.0], "Retry-After: 1 was not honoured (backoff alone is 0.01 s)"


@pytest.mark.parametrize(
    ("header", "waited"),
    [
        ("soon", 0.01),  # not seconds nor a date: the default backoff
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # an HTTP date in the past: no wait
        ("Fri, 31 Dec 2999 23:59:59 GMT", 0.5),  # far ahead: clamped to llm.retry_after_max_s
        ("Fri, 31 Dec 2999 23:59:59", 0.5),  # no zone: read as UTC (HTTP dates are GMT)
        ("1e400", 0.5),  # infinite seconds: clamped
        ("nan", 0.01),
        ("-3", 0.0),
    ],
)
def test_any_retry_after_is_parsed_or_ignored(fault_server, sleeps, header, waited):
    fault_server.script = [Step(status=429, headers={"Retry-After": header})]
    result = make(fault_server, retry_after_max_s=0.5).complete(MESSAGES, PingAnswer)
    assert result.value.entities[0].text == "Paris" and fault_server.count == 2
    assert sleeps == [waited]


def test_500_then_success(fault_server, sleeps):
    fault_server.script = [Step(status=500), Step(status=503)]
    result = make(fault_server).complete(MESSAGES, PingAnswer)
    assert fault_server.count == 3 and result.usage.retries == 2
    assert result.usage.prompt_tokens == 11
    assert sleeps == [0.01, 0.02]  # exponential backoff from retry_initial_s


def test_hang_times_out_and_retries(fault_server, sleeps):
    # The first request would be answered only after 600 s (or when the server closes): the
    # answer can come only from a second request, sent after the client gave up on the first.
    # (5 s is the client's timeout for each request: generous, so the second one is not cut
    # short on a busy machine.)
    fault_server.script = [Step(delay=600.0)]
    result = make(fault_server, timeout_s=5.0).complete(MESSAGES, PingAnswer)
    assert result.value.entities[0].type == "location"
    assert fault_server.count == 2 and result.usage.retries == 1
    assert sleeps == [0.01]


@pytest.mark.parametrize(
    "bad",
    [
        Step(content="Sure! The entities are Marie Curie and Paris."),  # not JSON
        Step(content='{"entities": [{"text": "Mar', finish_reason="length"),  # truncated
        Step(content='{"entities": [{"text": "Paris", "type": "city"}]}'),  # schema-invalid
    ],
    ids=["invalid", "truncated", "schema-invalid"],
)
def test_bad_answer_is_repaired_with_its_error(fault_server, bad):
    fault_server.script = [bad]
    result = make(fault_server).complete(MESSAGES, PingAnswer)
    assert result.value.entities[0].text == "Paris"
    assert fault_server.count == 2 and result.usage.retries == 1
    repair = fault_server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": bad.content}
    assert repair[-1]["content"].startswith(REPAIR_INSTRUCTION.split("{")[0])
    assert "entities" in repair[-1]["content"] or "JSON" in repair[-1]["content"]


def test_unrepairable_answer_raises_output_error_and_is_counted(fault_server):
    fault_server.default = Step(content="no json here")
    backend = make(fault_server, repair_retries=2)
    with pytest.raises(LLMOutputError) as info:
        backend.complete(MESSAGES, PingAnswer, stage="vote")
    assert fault_server.count == 3
    assert info.value.usage.calls == 3
    summary = backend.usage.summary()["vote"]
    assert summary.failures == 1 and summary.requests == 1


def test_complete_many_keeps_failures_in_their_slot(fault_server):
    fault_server.script = [Step(), Step(content="garbage"), Step(content="garbage")]
    backend = make(fault_server, concurrency=1)
    out = backend.complete_many(
        [Request(MESSAGES, PingAnswer, "a"), Request(MESSAGES, PingAnswer, "b"),
         Request(MESSAGES, PingAnswer, "c")]
    )  # fmt: skip
    assert [type(o).__name__ for o in out] == ["LLMResult", "LLMOutputError", "LLMResult"]
    assert fault_server.count == 4


def test_persistent_500_gives_up_after_max_retries(fault_server):
    fault_server.default = Step(status=500)
    with pytest.raises(LLMError, match=r"gave up after 3 attempt"):
        make(fault_server, max_retries=2).complete(MESSAGES, PingAnswer)
    assert fault_server.count == 3


def test_total_time_is_bounded(fault_server, sleeps):
    fault_server.default = Step(status=429, headers={"Retry-After": "30"})
    with pytest.raises(LLMError, match="max_total_s=2.0"):
        make(fault_server, max_total_s=2.0).complete(MESSAGES, PingAnswer)
    assert fault_server.count == 1  # a 30 s wait would exceed the bound: stop at once
    assert sleeps == []  # ... without waiting first


def test_auth_error_is_not_retried(fault_server):
    fault_server.default = Step(status=401)
    with pytest.raises(LLMError, match="rejected OPENAI_API_KEY"):
        make(fault_server).complete(MESSAGES, PingAnswer)
    assert fault_server.count == 1


def test_unreachable_server():
    with refused_url() as url:
        cfg = LLMConfig(backend="gpt", base_url=url, max_retries=1, retry_initial_s=0.01)
        with pytest.raises(LLMError, match="cannot reach the server after 2 attempt"):
            GptBackend(cfg).complete(MESSAGES, PingAnswer)


def test_concurrency_is_limited(fault_server):
    # Answers wait until three requests were in flight at once (then a little longer, so a
    # fourth would show): with a limit of 3 all six finish, three at once and never four.
    fault_server.default = Step(wait_for_in_flight=3, delay=30.0)
    backend = make(fault_server, concurrency=3, timeout_s=120.0)
    out = backend.complete_many([Request(MESSAGES, PingAnswer, "x")] * 6)
    assert all(o.value.entities for o in out)
    assert fault_server.count == 6
    assert fault_server.max_in_flight == 3


def test_concurrency_is_limited_across_callers(fault_server):
    """Callers that themselves run in parallel (sentences of a batch, each sending its experts
    with complete_many) share the backend's slots: never more than llm.concurrency requests in
    flight."""
    from concurrent.futures import ThreadPoolExecutor

    fault_server.default = Step(delay=0.3)
    backend = make(fault_server, concurrency=2)
    with ThreadPoolExecutor(max_workers=3) as pool:
        batches = list(
            pool.map(
                lambda _: backend.complete_many([Request(MESSAGES, PingAnswer, "x")] * 3),
                range(3),
            )
        )
    assert all(o.value.entities for batch in batches for o in batch)
    assert fault_server.count == 9 and fault_server.max_in_flight == 2


def test_schema_goes_in_request_only_for_loopback(fault_server):
    make(fault_server).complete(MESSAGES, PingAnswer)
    fmt = fault_server.requests[0]["response_format"]
    assert fmt["type"] == "json_object" and fmt["schema"]["properties"]["entities"]["maxItems"] == 3
    make(fault_server, json_schema_in_request=False).complete(MESSAGES, PingAnswer)
    assert fault_server.requests[1]["response_format"] == {"type": "json_object"}
    # The schema is always stated in the system message (JSON mode needs the word "JSON").
    system = fault_server.requests[1]["messages"][0]
    assert system["role"] == "system" and "JSON schema" in system["content"]
    assert json.loads(system["content"].split("schema: ", 1)[1])["title"] == "PingAnswer"


def test_garbage_http_body_is_retried(fault_server):
    fault_server.script = [Step(raw_body=b"<html>502 upstream hiccup</html>")]
    result = make(fault_server).complete(MESSAGES, PingAnswer)
    assert result.value.entities[0].text == "Paris"
    assert fault_server.count == 2 and result.usage.retries == 1
    fault_server.default = Step(raw_body=b"not json")
    with pytest.raises(LLMError, match="response body is not JSON"):
        make(fault_server, max_retries=1).complete(MESSAGES, PingAnswer)
    assert fault_server.count == 4


def test_a_model_that_refuses_logprobs_is_asked_without_them(fault_server, caplog):
    """Some models answer 400 to ``logprobs``: the choice is asked again without it (the
    answer's letters then count as they are), with one warning, and not offered again."""
    from choice_prompt import CHOICE, Pick

    refusal = json.dumps({"error": {"message": "logprobs are not supported with this model"}})
    fault_server.script = [Step(status=400, raw_body=refusal.encode())]
    fault_server.default = Step(content='{"c0":"B","c1":"C"}')
    backend = make(fault_server)
    with caplog.at_level("WARNING", logger="cdlm"):
        first = backend.complete(CHOICE, Pick, logprobs=True)
        second = backend.complete(CHOICE[:1] + CHOICE[1:], Pick, stage="again", logprobs=True)
    assert (first.value.c0, first.value.c1) == ("B", "C") and first.probs is None
    assert second.probs is None and fault_server.count == 3
    assert "logprobs" in fault_server.requests[0] and "logprobs" not in fault_server.requests[2]
    assert len([r for r in caplog.records if "refuses logprobs" in r.getMessage()]) == 1
