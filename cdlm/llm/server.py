"""Run ``python -m llama_cpp.server`` on a loopback port, for the tests and benchmarks that drive
the ``gpt`` backend end to end against a real OpenAI-compatible server.

The server binds port 0 itself (the OS picks a free one) and we read the port it got from its
log, so no other process can take the port between choosing and binding it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def local_server(
    model: Path,
    log: Path,
    *,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    startup_s: float = 180.0,
) -> Iterator[str]:
    """Start the server on 127.0.0.1, wait until it answers, yield its ``/v1`` base URL.

    The server binds port 0 (the system picks a free port) and reports the port it got in its
    log, so no other process can take the port between choosing and binding it. Output goes to
    ``log`` (a file, because a full stderr pipe would block the server).
    """
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", "0", "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    # llama_cpp.server lets $HOST/$PORT override the flags; they must not here.
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + startup_s
        base_url = None
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            if base_url is None and (found := _LISTENING.search(log.read_text(errors="replace"))):
                base_url = f"http://127.0.0.1:{found.group(1)}/v1"
            if base_url is not None:
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                        break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start in {startup_s:.0f} s")
            time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
