"""A scripted OpenAI-shaped fault server on 127.0.0.1 (the only fake in the LLM tests).

Each request gets the next scripted behaviour (429 with Retry-After, 500, a hang, broken JSON
...), so every failure path of the real ``openai`` client and our retry/repair layer runs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from cdlm.llm.server import free_port  # noqa: F401  (re-exported for the tests)

# -- the fault server ---------------------------------------------------------------------------
VALID = json.dumps({"entities": [{"text": "Paris", "type": "location"}]})


@dataclass
class Step:
    """One scripted reply: an HTTP status, a content string, optional headers/delay."""

    status: int = 200
    content: str = VALID
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    raw_body: bytes | None = None  # send these bytes instead of a chat completion


@dataclass
class FaultServer:
    base_url: str
    script: list[Step]
    default: Step = field(default_factory=Step)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        return len(self.requests)

    def next_step(self) -> Step:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


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
            step = server.next_step()
            try:
                time.sleep(step.delay)
                if step.raw_body is not None:
                    payload = step.raw_body
                elif step.status == 200:
                    payload = json.dumps(_completion(step)).encode()
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


def _completion(step: Step) -> dict[str, Any]:
    return {
        "id": "cmpl-fault",
        "object": "chat.completion",
        "created": 0,
        "model": "fault-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": step.content},
                "finish_reason": step.finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
