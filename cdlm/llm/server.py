"""Run ``python -m llama_cpp.server`` on a free loopback port, for the tests and benchmarks
that drive the ``gpt`` backend end to end against a real OpenAI-compatible server."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    Output goes to ``log`` (a file, because a full stderr pipe would block the server).
    """
    port = free_port()
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
    ]  # fmt: skip
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama_cpp.server did not start in {startup_s:.0f} s"
                    ) from None
                time.sleep(0.3)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
