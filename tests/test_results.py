"""The one results writer and the one atomic write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from cdlm.provenance import stamp
from cdlm.results import atomic_file, atomic_write_text, write_results


class Record(BaseModel):
    f1: float
    provenance: dict


def test_writes_json_and_markdown_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x__seed1.json"
    record = Record(f1=0.5, provenance=stamp(seed=1))
    assert write_results(path, record, "# x\n") == path
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == record.model_dump(mode="json")
    assert text == json.dumps(record.model_dump(mode="json"), indent=2) + "\n"
    assert path.with_suffix(".md").read_text(encoding="utf-8") == "# x\n"
    assert json.loads(text)["provenance"]["command"]  # the command line is stamped in
    other = tmp_path / "plain.json"
    write_results(other, {"rows": [], "provenance": {"commit": "abc"}})
    assert not other.with_suffix(".md").exists()  # JSON only when no Markdown is given


def test_a_record_without_provenance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provenance"):
        write_results(tmp_path / "x.json", {"f1": 0.5})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]  # no temp file left
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_results_name_paths_portably(tmp_path, monkeypatch) -> None:
    """No committed results file carries one machine's absolute paths: the runs folder is
    written as $CDLM_RUNS_DIR, paths under the working folder relative to it."""
    from cdlm.results import portable

    runs = tmp_path / "runs"
    monkeypatch.setenv("CDLM_RUNS_DIR", str(runs))
    monkeypatch.chdir(tmp_path)
    record = {
        "checkpoint": f"{runs}/politics__labels__seed1",
        "runs_dir": str(runs),
        "rows": [f"| `{runs}/ai__x__seed2` |", f"{tmp_path}/evals/results/a.json", 3],
    }
    assert portable(record) == {
        "checkpoint": "$CDLM_RUNS_DIR/politics__labels__seed1",
        "runs_dir": "$CDLM_RUNS_DIR",
        "rows": ["| `$CDLM_RUNS_DIR/ai__x__seed2` |", "evals/results/a.json", 3],
    }
    from cdlm.results import write_results

    out = write_results(tmp_path / "r.json", {**record, "provenance": {}}, f"`{runs}/x`")
    assert str(tmp_path) not in out.read_text() + out.with_suffix(".md").read_text()
    assert "`$CDLM_RUNS_DIR/x`" in out.with_suffix(".md").read_text()
    monkeypatch.setenv("CDLM_RUNS_DIR", "runs")  # relative already: nothing to hide
    assert portable("runs/x and /elsewhere/y") == "runs/x and /elsewhere/y"


def test_no_committed_results_file_names_a_machine_path() -> None:
    """The committed results, ledgers, graphs, suites and docs name checkpoints relative to the
    runs folder ($CDLM_RUNS_DIR) or the checkout, never by one machine's absolute path."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    machine = re.compile(r"(?<![\w$.])/(?:work|root|home|tmp|Users|mnt|opt)/[\w.-]+")
    files = [repo / "README.md"] + [
        p
        for folder in ("evals", "graphs", "docs")
        for p in (repo / folder).rglob("*")
        if p.is_file() and p.suffix in (".json", ".md", ".toml", ".py", ".sh")
    ]
    found = [
        f"{p.relative_to(repo)}: {m.group()}"
        for p in files
        for m in [machine.search(p.read_text(encoding="utf-8"))]
        if m
    ]
    assert len(files) > 100 and not found, found[:5]
