"""The app in-process (httpx over ASGI, the lifespan run as uvicorn runs it): what is off until
the operator turns it on (the LLM, other Host names, clients without the key), content type,
the 503/504 paths with their headers, generic error bodies, one bad text failing only its own
request, and a bounded load of 1,000 mixed requests with nothing lost.

The model is the real shape tagger (``names_checkpoint``: known entities, no data needed);
fakes stand in only for faults (a stuck model, a failing LLM, a model that raises on a text).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdlm.config import ServeConfig
from cdlm.errors import LLMError
from cdlm.inference.model import CDLM
from cdlm.serve.app import LLM_FAILED, MODEL_FAILED, create_app

JSON = {"content-type": "application/json"}
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris.",
    "The SPD won in 東京.",
    "no entities here at all.",
    "NATO and the UN met.",
]


@pytest.fixture(scope="module")
def names_model(names_checkpoint: Path) -> CDLM:
    return CDLM.from_pretrained(names_checkpoint)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` with its lifespan running (the batcher started, then stopped)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000", timeout=120
        ) as client:
            yield client


def served(app: Any, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with serving(app) as client:
            return await scenario(client)

    return asyncio.run(main())


class Stuck:
    """Fault fake: a model whose predict blocks until ``release`` is set."""

    domains = ["politics"]

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []

    def resolve(self, domain: str | None) -> str:
        return "politics"

    def labels(self, domain: str | None = None) -> list[str]:
        return ["person"]

    def predict(self, texts: list[str], **options: Any) -> list[list[dict]]:
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait()
        return [[] for _ in texts]


async def until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.005)


# --- off until the operator turns it on ----------------------------------------------------


def test_llm_is_403_without_allow_llm(names_model: CDLM) -> None:
    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.post("/predict", json={"texts": [TEXTS[0]], "llm": llm})
            for llm in ("gpt", "llama", "none")
        ]

    gpt, llama, none = served(create_app(names_model, ServeConfig()), scenario)
    for reply in (gpt, llama):
        assert reply.status_code == 403
        assert "--allow-llm" in reply.json()["detail"]
    assert none.status_code == 200
    assert none.json()["entities"] == names_model.predict([TEXTS[0]])


class FailingLLM:
    """Fault fake: the tagger part works, the LLM fails with a message full of internals."""

    domains = ["politics"]

    def __init__(self) -> None:
        self.llms: list[Any] = []

    def resolve(self, domain: str | None) -> str:
        return "politics"

    def labels(self, domain: str | None = None) -> list[str]:
        return []

    def predict(self, texts: list[str], *, llm: Any = None, **options: Any) -> list[list[dict]]:
        self.llms.append(llm)
        if llm is not None:
            raise LLMError("no answer from http://10.1.2.3:8080/v1 for /srv/models/secret.gguf")
        return [[] for _ in texts]


def test_allowed_llm_is_the_operators_and_its_failure_is_a_generic_502(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FailingLLM()
    app = create_app(model, ServeConfig(allow_llm=True), llm="operator-llm")

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/predict", json={"texts": ["a"], "llm": "gpt"})

    with caplog.at_level("ERROR", logger="cdlm.serve"):
        reply = served(app, scenario)
    assert reply.status_code == 502
    assert reply.json() == {"detail": LLM_FAILED}
    assert "/srv" not in reply.text and "http" not in reply.text
    assert model.llms == ["operator-llm"]  # not the "gpt" the client named
    assert "secret.gguf" in caplog.text  # the detail is in the server log


def test_bearer_key_from_the_environment(
    names_model: CDLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDLM_SERVE_KEY", "s3cret-key")
    app = create_app(names_model, ServeConfig())
    body = {"texts": [TEXTS[0]]}

    async def scenario(client: httpx.AsyncClient) -> dict[str, httpx.Response]:
        good = {"authorization": "Bearer s3cret-key"}
        return {
            "none": await client.post("/predict", json=body),
            "wrong": await client.post(
                "/predict", json=body, headers={"authorization": "Bearer x"}
            ),
            "basic": await client.post("/predict", json=body, headers={"authorization": "Basic x"}),
            "good": await client.post("/predict", json=body, headers=good),
            "labels": await client.get("/labels"),
            "docs": await client.get("/openapi.json"),
            "health": await client.get("/health"),
            "health_key": await client.get("/health", headers=good),
        }

    replies = served(app, scenario)
    for name in ("none", "wrong", "basic", "labels", "docs"):
        assert replies[name].status_code == 401, name
        assert replies[name].headers["www-authenticate"] == "Bearer"
    assert replies["good"].status_code == 200
    assert replies["good"].json()["entities"] == names_model.predict([TEXTS[0]])
    assert replies["health"].status_code == 200
    assert replies["health"].json() == {"status": "ok"}  # liveness only, nothing about the model
    assert replies["health_key"].json()["domains"] == ["politics"]
    assert all("s3cret" not in r.text for r in replies.values())


def test_host_header_must_be_trusted(names_model: CDLM) -> None:
    async def scenario(app: Any, hosts: list[str]) -> list[int]:
        async with serving(app) as client:
            return [
                (
                    await client.post("/predict", json={"texts": ["a"]}, headers={"host": h})
                ).status_code
                for h in hosts
            ]

    default = create_app(names_model, ServeConfig())
    hosts = ["evil.example", "evil.example:8000", "localhost:8000", "[::1]:8000", "127.0.0.1"]
    assert asyncio.run(scenario(default, hosts)) == [403, 403, 200, 200, 200]
    named = create_app(names_model, ServeConfig(trusted_hosts=["ner.example.org"]))
    assert asyncio.run(scenario(named, ["NER.example.org:443", "localhost"])) == [200, 403]


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("Application/JSON; charset=UTF-8", 200),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=latin-1", 415),
        (None, 415),
    ],
)
def test_predict_needs_json(names_model: CDLM, content_type: str | None, status: int) -> None:
    headers = {"content-type": content_type} if content_type else {}

    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        content = json.dumps({"texts": [TEXTS[0]]}).encode()
        return await client.post("/predict", content=content, headers=headers)

    reply = served(create_app(names_model, ServeConfig()), scenario)
    assert reply.status_code == status


# --- 503, 504, dead batcher ------------------------------------------------------------------


def test_full_queue_is_503_with_retry_after() -> None:
    model = Stuck()
    app = create_app(model, ServeConfig(max_queue=1, max_wait_ms=0, retry_after_s=7))

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], httpx.Response]:
        try:
            first = asyncio.create_task(client.post("/predict", json={"texts": ["a"]}))
            await until(model.started.is_set)  # taken: the model is stuck on it
            second = asyncio.create_task(client.post("/predict", json={"texts": ["b"]}))
            await until(lambda: app.state.batcher.waiting == 1)  # the queue is full
            refused = await client.post("/predict", json={"texts": ["c"]})
        finally:
            model.release.set()
        return list(await asyncio.gather(first, second)), refused

    answered, refused = served(app, scenario)
    assert [r.status_code for r in answered] == [200, 200]
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "7"


def test_dead_batcher_fails_waiting_requests_fast_and_health_says_so() -> None:
    model = Stuck()
    app = create_app(model, ServeConfig(max_wait_ms=0, retry_after_s=3, request_timeout_s=60))

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], ...]:
        try:
            running = asyncio.create_task(client.post("/predict", json={"texts": ["a"]}))
            await until(model.started.is_set)
            queued = asyncio.create_task(client.post("/predict", json={"texts": ["b"]}))
            await until(lambda: app.state.batcher.waiting == 1)
            app.state.batcher._task.cancel()  # the loop dies outside shutdown
            waiting = list(await asyncio.gather(running, queued))
            later = await client.post("/predict", json={"texts": ["c"]})
            health = await client.get("/health")
        finally:
            model.release.set()
        return waiting, [later, health]

    waiting, (later, health) = served(app, scenario)
    for reply in [*waiting, later]:
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "3"
    assert health.status_code == 503 and health.json()["status"] == "dead"
    assert health.headers["retry-after"] == "3"
    assert model.calls == [["a"]]  # "b" and "c" never reached the model


def test_timeout_is_504_and_a_queued_job_is_dropped() -> None:
    model = Stuck()
    app = create_app(model, ServeConfig(max_wait_ms=0, request_timeout_s=0.2))

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], httpx.Response]:
        try:
            running = asyncio.create_task(client.post("/predict", json={"texts": ["a"]}))
            await until(model.started.is_set)
            queued = asyncio.create_task(client.post("/predict", json={"texts": ["b"]}))
            late = list(await asyncio.gather(running, queued))
        finally:
            model.release.set()
        return late, await client.post("/predict", json={"texts": ["c"]})

    late, after = served(app, scenario)
    assert [r.status_code for r in late] == [504, 504]
    assert "serve.request_timeout_s" in late[0].json()["detail"]
    assert after.status_code == 200
    assert model.calls == [["a"], ["c"]]  # "b" timed out in the queue: never run


# --- generic error bodies ---------------------------------------------------------------------


class BrokenLabels(Stuck):
    """Fault fake: ``labels`` raises an unexpected error naming a path."""

    def labels(self, domain: str | None = None) -> list[str]:
        raise RuntimeError(f"cannot read {Path.home() / 'models' / 'labels.json'}")


def test_unexpected_error_is_a_generic_500() -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/labels")

    reply = served(create_app(BrokenLabels(), ServeConfig()), scenario)
    assert reply.status_code == 500
    assert reply.json() == {"detail": "internal server error (see the server log)"}


@pytest.mark.parametrize(
    "body",
    [b'{"texts": "\\ud800"}', b'{"\\ud800": 1, "texts": ["a"]}', b'{"texts": ["a"], "x": "/etc"}'],
)
def test_422_bodies_echo_no_input_nor_urls(names_model: CDLM, body: bytes) -> None:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/predict", content=body, headers=JSON)

    reply = served(create_app(names_model, ServeConfig()), scenario)
    assert reply.status_code == 422
    assert "http" not in reply.text and "/etc" not in reply.text and "input" not in reply.json()


# --- one bad text answers for itself ----------------------------------------------------------


def test_surrogate_text_is_422_and_its_batch_neighbours_are_answered(names_model: CDLM) -> None:
    config = ServeConfig(max_batch_texts=len(TEXTS), max_wait_ms=10_000)  # all 4 in one batch
    app = create_app(names_model, config)
    bad = b'{"texts": ["Angela Merkel", "Paris \\ud800 x"]}'

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], dict]:
        replies = await asyncio.gather(
            client.post("/predict", content=bad, headers=JSON),
            *(client.post("/predict", json={"texts": [t]}) for t in TEXTS),
        )
        return list(replies), (await client.get("/health")).json()

    (rejected, *answered), health = served(app, scenario)
    assert rejected.status_code == 422
    assert rejected.json()["detail"].startswith("texts[1] is not valid Unicode")
    assert [r.status_code for r in answered] == [200] * len(TEXTS)
    assert [r.json()["entities"] for r in answered] == [names_model.predict([t]) for t in TEXTS]
    assert health["calls"]["largest"] == len(TEXTS)  # the four shared one forward pass


class Poisoned:
    """Fault fake around the real model: a call with a text containing POISON raises."""

    def __init__(self, model: CDLM) -> None:
        self.model, self.domains = model, model.domains
        self.calls: list[int] = []

    def resolve(self, domain: str | None) -> str:
        return self.model.resolve(domain)

    def labels(self, domain: str | None = None) -> list[str]:
        return self.model.labels(domain)

    def predict(self, texts: list[str], **options: Any) -> Any:
        self.calls.append(len(texts))
        if any("POISON" in t for t in texts):
            raise RuntimeError(f"tokenizer failed on {Path(tempfile.gettempdir()) / 'vocab.txt'}")
        return self.model.predict(texts, **options)


def test_model_error_in_a_merged_call_fails_only_its_own_request(names_model: CDLM) -> None:
    model = Poisoned(names_model)
    texts = [TEXTS[0], "POISON pill", TEXTS[1], TEXTS[3]]
    app = create_app(model, ServeConfig(max_batch_texts=len(texts), max_wait_ms=10_000))

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return list(
            await asyncio.gather(*(client.post("/predict", json={"texts": [t]}) for t in texts))
        )

    replies = served(app, scenario)
    assert [r.status_code for r in replies] == [200, 500, 200, 200]
    assert replies[1].json() == {"detail": MODEL_FAILED}
    for k in (0, 2, 3):
        assert replies[k].json()["entities"] == names_model.predict([texts[k]])
    assert model.calls == [4, 1, 1, 1, 1]  # merged, failed, then each request alone


# --- bounded load -----------------------------------------------------------------------------


def _mixed(k: int) -> tuple[dict[str, Any], int, list[str] | None]:
    """Request ``k`` of the load test: httpx arguments, the expected status, the good texts."""
    kind = k % 10
    if kind < 5:  # good: 1 to 3 texts
        texts = [TEXTS[(k + j) % len(TEXTS)] + f" ({k})" for j in range(1 + k % 3)]
        return {"json": {"texts": texts}}, 200, texts
    bad: dict[int, tuple[dict[str, Any], int]] = {
        5: ({"content": b'{"texts": ["ok", "\\udc80 x"]}', "headers": JSON}, 422),
        6: (
            {"json": {"texts": ["x" * 201]}} if k % 20 < 10 else {"json": {"texts": ["a"] * 5}},
            413,
        ),
        7: ({"content": b'{"texts": ["a"]}', "headers": {"content-type": "text/plain"}}, 415),
        8: ({"json": {"texts": ["a"], "llm": "gpt" if k % 20 < 10 else "llama"}}, 403),
        9: ({"content": b'{"texts": [', "headers": JSON}, 422)
        if k % 20 < 10
        else ({"content": b'{"texts": ["' + b"a" * 5000 + b'"]}', "headers": JSON}, 413),
    }
    args, status = bad[kind]
    return args, status, None


def test_bounded_load_of_mixed_requests_loses_nothing(names_model: CDLM) -> None:
    config = ServeConfig(max_texts=4, max_text_chars=200, max_body_bytes=4000, max_wait_ms=5)
    app = create_app(names_model, config)
    plan = [_mixed(k) for k in range(1000)]
    expected = {
        k: names_model.predict(texts) for k, (_, _, texts) in enumerate(plan) if texts is not None
    }
    limit = asyncio.Semaphore(32)

    async def one(client: httpx.AsyncClient, args: dict[str, Any]) -> httpx.Response:
        async with limit:
            return await client.post("/predict", **args)

    async def scenario(client: httpx.AsyncClient) -> tuple[list[httpx.Response], dict]:
        replies = await asyncio.gather(*(one(client, args) for args, _, _ in plan))
        return list(replies), (await client.get("/health")).json()

    replies, health = served(app, scenario)
    assert len(replies) == 1000
    assert [r.status_code for r in replies] == [status for _, status, _ in plan]
    for k, entities in expected.items():
        assert replies[k].json()["entities"] == entities, k
    good = len(expected)
    assert health["queue"]["requests"] == health["queue"]["answered"] == good
    assert health["calls"]["calls"] < good  # micro-batched under load
