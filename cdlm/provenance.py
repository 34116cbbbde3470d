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


def git_state(repo: Path | None = None) -> tuple[str | None, bool | None]:
    """The checkout's HEAD commit (40 hex digits) and whether it has uncommitted changes outside
    ``evals/results/`` (result files are outputs, and a suite rewrites its own as it goes);
    ``(None, None)`` when git or the checkout is not there (e.g. an installed wheel)."""
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
        return None, None
    return head, bool(dirty)


def git_commit(repo: Path | None = None) -> str:
    """HEAD as ``<40 hex>``, ``<40 hex>+dirty`` with uncommitted changes, or ``unknown``."""
    return _commit_string(*git_state(repo))


def _commit_string(head: str | None, dirty: bool | None) -> str:
    return "unknown" if head is None else head + ("+dirty" if dirty else "")


def command_line() -> str:
    """The command as the user typed it (``cdlm ...``), shell-quoted."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in {"cdlm", "__main__.py"}:
        argv[0] = "cdlm"
    return shlex.join(argv)


def stamp(**extra: Any) -> dict[str, Any]:
    """A provenance record; ``extra`` (config, seed, ...) is merged in.

    ``commit`` is the string readers print; ``commit_known`` and ``dirty`` say explicitly whether
    it names a clean commit (``dirty`` is None when the commit is unknown)."""
    head, dirty = git_state()
    record: dict[str, Any] = {
        "command": command_line(),
        "commit": _commit_string(head, dirty),
        "commit_known": head is not None,
        "dirty": dirty,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
    }
    record.update(extra)
    return record
