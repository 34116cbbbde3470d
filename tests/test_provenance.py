"""The provenance stamp: a commit is 40 hex digits (``+dirty`` with uncommitted changes), or the
stamp says explicitly that it is unknown; never a guess that passes for a commit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from cdlm import provenance

HEX40 = re.compile(r"[0-9a-f]{40}")


def assert_commit_stamp(record: dict[str, Any]) -> None:
    """What every results file's provenance must satisfy (used by the results-file tests)."""
    commit = record["commit"]
    if record["commit_known"]:
        head, _, flag = commit.partition("+")
        assert HEX40.fullmatch(head), commit
        assert flag == ("dirty" if record["dirty"] else ""), record
    else:
        assert commit == "unknown" and record["dirty"] is None, record


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_commit_clean_dirty_and_unknown(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "evals" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("x = 1\n")
    (repo / "evals" / "results" / "r.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert HEX40.fullmatch(head)

    assert provenance.git_state(repo) == (head, False)
    assert provenance.git_commit(repo) == head
    # A rewritten results file is an output, not a change to the code.
    (repo / "evals" / "results" / "r.json").write_text('{"f1": 1}\n')
    assert provenance.git_commit(repo) == head
    (repo / "code.py").write_text("x = 2\n")
    assert provenance.git_state(repo) == (head, True)
    assert provenance.git_commit(repo) == f"{head}+dirty"

    outside = tmp_path / "not-a-checkout"
    outside.mkdir()
    assert provenance.git_state(outside) == (None, None)
    assert provenance.git_commit(outside) == "unknown"


def test_stamp_marks_the_commit_explicitly(tmp_path: Path, monkeypatch) -> None:
    record = provenance.stamp(seed=3)
    assert record["seed"] == 3 and record["command"]
    assert_commit_stamp(record)
    # This checkout is a git checkout, so the commit is known here.
    assert record["commit_known"] is True

    monkeypatch.setattr(provenance, "git_state", lambda repo=None: (None, None))
    unknown = provenance.stamp()
    assert unknown["commit"] == "unknown" and unknown["commit_known"] is False
    assert unknown["dirty"] is None
    assert_commit_stamp(unknown)
