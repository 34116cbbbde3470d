"""A scripted OpenAI-shaped fault server on 127.0.0.1 (the only fake in the LLM tests).

Each request gets the next scripted behaviour (429 with Retry-After, 500, a hang, broken JSON
...), so every failure path of the real ``openai`` client and our retry/repair layer runs. A
``responder`` answers from the request itself instead (scripted answers that do not depend on
the order concurrent requests arrive in). The server records every request, and the most
requests it ever had in flight at once, so tests check counts and order, never wall time.

A step's content may also be a function of the request body: :func:`schema_answer` answers
every request with a valid instance of the JSON schema it sends (llm.json_schema_in_request),
chosen deterministically from the request, so whole reasoning runs go through the server in
any order -- with a fixed ``delay``, a stand-in for an API whose latency overlaps requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# -- the fault server ---------------------------------------------------------------------------
VALID = json.dumps({"entities": [{"text": "Paris", "type": "location"}]})


@dataclass
class Step:
    """One scripted reply: an HTTP status, a content string, optional headers/delay."""

    status: int = 200
    content: str | Callable[[dict[str, Any]], str] = VALID  # text, or text from the request
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (cut short when the server closes)
    finish_reason: str = "stop"
    raw_body: bytes | None = None  # send these bytes instead of a chat completion
    # Hold the answer until this many requests have been in flight at once (at most ``delay``
    # seconds), then a little longer, so a request over a concurrency limit would be seen.
    wait_for_in_flight: int = 0


@dataclass
class FaultServer:
    base_url: str
    script: list[Step]
    default: Step = field(default_factory=Step)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    responder: Callable[[dict[str, Any]], Step] | None = None  # answers from the request
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def count(self) -> int:
        return len(self.requests)

    def next_step(self, body: dict[str, Any]) -> Step:
        with self.lock:
            if self.script:
                return self.script.pop(0)
        return self.responder(body) if self.responder is not None else self.default

    def hold(self, step: Step) -> None:
        """Wait as the step says; returns early when the server shuts down."""
        if step.wait_for_in_flight:
            with self.lock:
                self.lock.wait_for(
                    lambda: self.max_in_flight >= step.wait_for_in_flight or self.closing.is_set(),
                    timeout=step.delay,
                )
            self.closing.wait(0.2)
        else:
            self.closing.wait(step.delay)


def make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with server.lock:
                server.requests.append(body)
                server.auth_headers.append(self.headers.get("Authorization", ""))
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
                server.lock.notify_all()
            step = server.next_step(body)
            try:
                server.hold(step)
                if step.raw_body is not None:
                    payload = step.raw_body
                elif step.status == 200:
                    content = step.content(body) if callable(step.content) else step.content
                    payload = json.dumps(_completion(step, content)).encode()
                else:
                    payload = json.dumps({"error": {"message": f"scripted {step.status}"}}).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in step.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)
            finally:
                with server.lock:
                    server.in_flight -= 1

    return Handler


def _completion(step: Step, content: str) -> dict[str, Any]:
    return {
        "id": "cmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": "fault-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": step.finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


@contextlib.contextmanager
def running(default: Step | None = None) -> Iterator[FaultServer]:
    """A fault server on 127.0.0.1 (port 0: the system picks a free one, the server reports
    it), answering every request with ``default`` until the script says otherwise."""
    state = FaultServer(base_url="", script=[], default=default or Step())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.closing.set()  # wake held requests
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: every connect is refused, and no
    other process can start listening there while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


# -- answers built from the request's JSON schema ----------------------------------------------
def schema_answer(body: dict[str, Any]) -> str:
    """A compact, valid instance of the request's ``response_format`` schema; every choice
    (enum) is picked by a hash of the messages and the field's path, so the same request always
    gets the same answer and different experts or sentences get different ones."""
    schema = body["response_format"]["schema"]
    seed = json.dumps(body["messages"], sort_keys=True)
    value = _instance(schema, schema.get("$defs", {}), seed, "")
    return json.dumps(value, separators=(",", ":"))


def _pick(options: list[Any], seed: str, path: str) -> Any:
    digest = hashlib.sha256(f"{seed}|{path}".encode()).digest()
    return options[int.from_bytes(digest[:4], "big") % len(options)]


def _instance(node: dict[str, Any], defs: dict[str, Any], seed: str, path: str) -> Any:
    if "$ref" in node:
        return _instance(defs[node["$ref"].rsplit("/", 1)[1]], defs, seed, path)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return _pick(node["enum"], seed, path)
    if "anyOf" in node:
        return _instance(node["anyOf"][0], defs, seed, path)
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties", {})
        return {k: _instance(v, defs, seed, f"{path}.{k}") for k, v in props.items()}
    if kind == "array":
        if "prefixItems" in node:
            return [
                _instance(item, defs, seed, f"{path}[{i}]")
                for i, item in enumerate(node["prefixItems"])
            ]
        return [
            _instance(node["items"], defs, seed, f"{path}[{i}]")
            for i in range(node.get("minItems", 0))
        ]
    if kind == "string":
        return "ok"
    if kind in ("integer", "number"):
        return node.get("minimum", 0)
    if kind == "boolean":
        return False
    raise ValueError(f"schema_answer: unsupported schema node at {path or 'root'}: {node}")
