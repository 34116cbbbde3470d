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
