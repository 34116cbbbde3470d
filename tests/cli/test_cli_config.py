"""``--config FILE.toml`` on ``cdlm train``, ``cdlm eval llm`` and ``cdlm predict``: a missing file,
malformed TOML, an unknown key or a wrong type is one line on stderr naming the file (and the
field), exit 2, no traceback -- before any model is loaded or trained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdlm.cli import main

# What each faulty file holds, and what its error line must say besides the file name.
FAULTS = {
    "missing": (None, "config file not found"),
    "malformed": ("[train\nseed = 1\n", "not valid TOML"),
    "unknown key": ("[train]\nseeed = 2\n", "field 'train.seeed': Extra inputs are not permitted"),
    "wrong type": ('[train]\nseed = "x"\n', "field 'train.seed': Input should be a valid integer"),
}
# --config is read by train, eval llm, predict and predict corpus (eval scores a model under the
# config it was saved with; eval suite under the suite file's).
COMMANDS = {
    "train": ["train", "--target", "politics"],
    "eval llm": ["eval", "llm", "--llm", "llama"],
    "eval --llm (old spelling)": ["eval", "--llm", "llama"],
    "predict": ["predict", "Merkel met Macron.", "--llm", "llama"],
    "predict corpus": ["predict", "corpus", "-i", "in.jsonl", "-o", "never-written.jsonl"],
}


def config_file(tmp_path: Path, fault: str) -> Path:
    path = tmp_path / "my-config.toml"
    content, _ = FAULTS[fault]
    if content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def run_main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """``cdlm ARGS`` in this process, through the console entry point's error handling."""
    monkeypatch.setattr(sys, "argv", ["cdlm", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_bad_config_file_is_one_line(command, fault, tmp_path, monkeypatch, capsys) -> None:
    path = config_file(tmp_path, fault)
    code, out, err = run_main([*COMMANDS[command], "--config", str(path)], monkeypatch, capsys)
    assert code == 2, (out, err)
    lines = err.splitlines()
    if "old spelling" in command:  # says so first, in one line of its own
        assert lines[0] == "note: cdlm eval --llm is deprecated; use cdlm eval llm --llm"
        lines = lines[1:]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}: "), lines[0]
    assert FAULTS[fault][1] in lines[0], lines[0]
    assert out == ""  # nothing ran


def test_console_entry_point_prints_no_traceback(tmp_path) -> None:
    """The same through ``python -m cdlm`` in a fresh process (what a user runs)."""
    path = config_file(tmp_path, "malformed")
    proc = subprocess.run(
        [sys.executable, "-m", "cdlm", "train", "--target", "politics", "--config", str(path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}: not valid TOML: ")
