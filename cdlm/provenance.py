"""Provenance stamped into every results file: command line, commit, time, host facts."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_commit(repo: Path | None = None) -> str:
    """The checkout's HEAD commit (with ``+dirty`` when there are uncommitted changes outside
    ``evals/results/``: result files are outputs, and a suite rewrites its own as it goes)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                *("git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"),
                *("--", ".", ":(exclude)evals/results"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command_line() -> str:
    """The command as the user typed it (``cdlm ...``), shell-quoted."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in {"cdlm", "__main__.py"}:
        argv[0] = "cdlm"
    return shlex.join(argv)


def stamp(**extra: Any) -> dict[str, Any]:
    """A provenance record; ``extra`` (config, seed, ...) is merged in."""
    record: dict[str, Any] = {
        "command": command_line(),
        "commit": git_commit(),
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    record.update(extra)
    return record
