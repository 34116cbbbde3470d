"""``cdlm llm ping`` setup errors: one line on stderr, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def ping(*args: str, env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run(
        [sys.executable, "-m", "cdlm", "llm", "ping", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_missing_gguf(tmp_path):
    line = one_line_error(ping("--model", str(tmp_path / "nope.gguf")))
    assert "nope.gguf: GGUF model file not found" in line


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "weights.gguf"
    bad.write_text("hello")
    assert "not a GGUF file" in one_line_error(ping("--model", str(bad)))


def test_context_too_small(smollm_path):
    line = one_line_error(ping("--model", str(smollm_path), "--n-ctx", "96"))
    assert "does not fit the 256-token context (short by" in line  # llama.cpp rounds up to 256


@pytest.mark.parametrize("url", [None, "https://api.example.com/v1"])
def test_missing_api_key(url):
    args = ["--llm", "gpt"] + (["--base-url", url] if url else [])
    line = one_line_error(ping(*args, env_drop=("OPENAI_API_KEY", "OPENAI_BASE_URL")))
    assert "OPENAI_API_KEY is not set" in line


def test_unknown_backend():
    line = one_line_error(ping("--llm", "claude"))  # the option lists its choices
    assert "--llm" in line and "'claude'" in line and "'llama', 'gpt'" in line
