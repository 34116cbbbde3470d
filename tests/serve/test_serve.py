"""`cdlm serve` for real: the console command on 127.0.0.1 (port 0, the port read from its
output), queried with httpx: routes, limits with their status and message, micro-batching of
concurrent requests, nothing lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cdlm.inference.model import CDLM
from cdlm.serve.server import LISTENING

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget.",
    "The SPD won the election in Lower Saxony.",
]


class Served:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc, self.url = proc, url


def _start(checkpoint: Path, config: Path, *flags: str) -> Served:
    cmd = [sys.executable, "-m", "cdlm", "serve", "--checkpoint", str(checkpoint), "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, "--config", str(config), *flags],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(LISTENING):
            return Served(proc, line.split()[-1])
    proc.wait()
    raise AssertionError(f"cdlm serve did not start: {proc.stderr.read()}")  # type: ignore[union-attr]


def _stop(served: Served) -> None:
    served.proc.terminate()
    served.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "serve.toml"
    path.write_text(
        "[serve]\nmax_texts = 4\nmax_text_chars = 200\nmax_body_bytes = 4000\n"
        # a generous wait, so that concurrent requests meet in one batch on a busy machine
        "max_wait_ms = 200\nmax_batch_texts = 8\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, config: Path) -> Iterator[Served]:
    served = _start(tiny_checkpoint, config)
    yield served
    _stop(served)


def test_binds_loopback_and_answers_health_and_labels(server: Served, tiny_checkpoint: Path):
    assert server.url.startswith("http://127.0.0.1:")
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["domains"] == ["politics"]
    model = CDLM.from_pretrained(tiny_checkpoint)
    labels = httpx.get(f"{server.url}/labels").json()
    assert labels == {"domains": {"politics": model.labels("politics")}}


def test_predict_gives_the_model_objects_entities(server: Served, tiny_checkpoint: Path):
    reply = httpx.post(f"{server.url}/predict", json={"texts": TEXTS}, timeout=300)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["domain"] == "politics"
    assert body["entities"] == CDLM.from_pretrained(tiny_checkpoint).predict(TEXTS)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"texts": ["a"] * 5}, 413, "5 texts exceed serve.max_texts (4)"),
        ({"texts": ["ok", "x" * 201]}, 413, "texts[1] has 201 characters, more than "),
        ({"texts": ["a"], "domain": "music"}, 422, "unknown domain 'music'"),
        ({"texts": ["a"], "llm": "claude"}, 422, "llm"),
        ({"texts": ["a"], "llm": "gpt"}, 403, "did not start it with --allow-llm"),
        ({"texts": []}, 422, "texts"),
        ({"text": "a"}, 422, "texts"),
        ({"texts": ["a"], "threshold": 2}, 422, "threshold"),
    ],
)
def test_limits_and_bad_requests(server: Served, body: dict, status: int, message: str) -> None:
    reply = httpx.post(f"{server.url}/predict", json=body, timeout=300)
    assert reply.status_code == status
    assert message in str(reply.json()["detail"])


def test_body_size_cap_with_and_without_content_length(server: Served) -> None:
    big = b'{"texts": ["' + b"a" * 5000 + b'"]}'
    json_type = {"content-type": "application/json"}
    reply = httpx.post(f"{server.url}/predict", content=big, headers=json_type)
    assert reply.status_code == 413
    assert reply.json()["detail"] == (
        "request body of 5015 bytes exceeds serve.max_body_bytes (4000)"
    )

    def chunks():  # no Content-Length: the cap applies while the body arrives
        for k in range(0, len(big), 1000):
            yield big[k : k + 1000]

    reply = httpx.post(f"{server.url}/predict", content=chunks(), headers=json_type)
    assert reply.status_code == 413
    assert "more than 4000 bytes exceeds serve.max_body_bytes" in reply.json()["detail"]


async def _burst(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=600) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/predict", json={"texts": [f"{TEXTS[k % 2]} ({k})"]})
              for k in range(n))
        )  # fmt: skip


def test_concurrent_requests_are_micro_batched_and_all_answered(server: Served) -> None:
    before = httpx.get(f"{server.url}/health").json()
    replies = asyncio.run(_burst(server.url, 16))
    assert [r.status_code for r in replies] == [200] * 16
    for k, r in enumerate(replies):  # each request got its own text's answer
        for e in r.json()["entities"][0]:
            assert f"{TEXTS[k % 2]} ({k})"[e["start"] : e["end"]] == e["text"]
    after = httpx.get(f"{server.url}/health").json()
    requests = after["queue"]["requests"] - before["queue"]["requests"]
    calls = after["calls"]["calls"] - before["calls"]["calls"]
    assert requests == after["queue"]["answered"] - before["queue"]["answered"] == 16
    assert calls < 16 and after["calls"]["largest"] > 1


def test_one_by_one_switch(tiny_checkpoint: Path, config: Path) -> None:
    served = _start(tiny_checkpoint, config, "--no-micro-batch")
    try:
        replies = asyncio.run(_burst(served.url, 6))
        assert [r.status_code for r in replies] == [200] * 6
        health = httpx.get(f"{served.url}/health").json()
        assert health["micro_batch"] is False
        assert health["calls"]["calls"] == 6 and health["calls"]["largest"] == 1
    finally:
        _stop(served)


def test_other_machines_need_a_key(cdlm_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDLM_SERVE_KEY", raising=False)
    done = cdlm_cli("serve", "--host", "0.0.0.0", "--checkpoint", "nowhere", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: serve.host 0.0.0.0 is reachable from other machines")
    assert "$CDLM_SERVE_KEY" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_key_host_and_content_type_over_http(
    names_checkpoint: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDLM_SERVE_KEY", "k3y-for-the-test")
    served = _start(names_checkpoint, config)
    key = {"authorization": "Bearer k3y-for-the-test"}
    try:
        predict = f"{served.url}/predict"
        assert httpx.post(predict, json={"texts": TEXTS}).status_code == 401
        reply = httpx.post(predict, json={"texts": TEXTS}, headers=key, timeout=300)
        assert reply.status_code == 200 and len(reply.json()["entities"]) == 2
        evil = {**key, "host": "attacker.example"}
        assert httpx.post(predict, json={"texts": TEXTS}, headers=evil).status_code == 403
        text = {**key, "content-type": "text/plain"}
        assert httpx.post(predict, content=b'{"texts": ["a"]}', headers=text).status_code == 415
        assert httpx.get(f"{served.url}/health").json() == {"status": "ok"}
        health = httpx.get(f"{served.url}/health", headers=key).json()
        assert health["model"] == names_checkpoint.name  # the folder's name, not its path
    finally:
        _stop(served)
