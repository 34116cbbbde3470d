"""``cdlm augment`` end to end on small BIO folders (entity-level only: no LLM needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_provenance import assert_commit_stamp

from cdlm.data.bio import read_bio

TRAIN = """Kohl\tB-politician
met\tO
Jacques\tB-politician
Chirac\tI-politician
in\tO
Bonn\tB-location
.\tO

Mitterrand\tB-politician
visited\tO
Paris\tB-location
.\tO

It\tO
rained\tO
.\tO

"""


def _cdlm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdlm", *args], capture_output=True, text=True, timeout=120
    )


def _dataset(folder: Path, train: str) -> Path:
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}.txt").write_text(train, encoding="utf-8")
    return folder


def test_augment_writes_bio_sidecar_and_summary(tmp_path):
    data = _dataset(tmp_path / "toy", TRAIN)
    out = tmp_path / "aug" / "toy.txt"
    options = ["--entity-ratio", "3", "--context-ratio", "0", "--seed", "5"]
    run = _cdlm("augment", "--target", str(data), "--out", str(out), *options)
    assert run.returncode == 0, run.stderr
    sents = read_bio(out)  # strict IOB2 reader: every generated sentence is valid
    sidecar = [json.loads(line) for line in (out.parent / "toy.txt.jsonl").read_text().splitlines()]
    summary = json.loads((out.parent / "toy.txt.summary.json").read_text())
    assert summary["command"].startswith("cdlm augment")
    assert_commit_stamp(summary)
    stats = summary["stats"]
    assert len(sents) == 3 + len(sidecar) == 3 + stats["entity"]["generated"]
    assert stats["sentences_without_entities"] == 1 and stats["filter"] is None
    assert stats["entity_base"] == {"location": 2, "politician": 3}
    for rec in sidecar:
        assert rec["kind"] == "entity" and rec["origin"] in (0, 1)
        assert " ".join(sents[rec["index"]].tokens) == rec["text"]
        (rep,) = rec["replaced"]
        assert rep["old"] != rep["new"]
    per_origin = [sum(r["origin"] == o for r in sidecar) for o in (0, 1)]
    assert per_origin == [3, 3]
    assert "no --checkpoint" in run.stderr and "wrote" in run.stderr
    again = tmp_path / "aug" / "again.txt"
    _cdlm("augment", "--target", str(data), "--out", str(again), *options)
    assert again.read_text() == out.read_text()  # same seed, same file


def test_empty_entity_base_is_reported_not_fatal(tmp_path):
    data = _dataset(tmp_path / "plain", "It\tO\nrained\tO\n.\tO\n\n")
    out = tmp_path / "plain.txt"
    run = _cdlm("augment", "--target", str(data), "--out", str(out), "--context-ratio", "0")
    assert run.returncode == 0, run.stderr
    assert "empty entity base" in run.stderr
    assert len(read_bio(out)) == 1


def test_unknown_target_is_one_line_error(tmp_path):
    run = _cdlm("augment", "--target", "nowhere", "--out", str(tmp_path / "x.txt"))
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
