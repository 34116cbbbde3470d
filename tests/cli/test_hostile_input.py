"""Hostile input files through the real commands, in process: every one ends in output or in
one ``error:`` line with exit code 2, never a traceback; a corpus run loses no record it read
and writes nothing for a line it refused; every returned span lies inside its text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.cli import main

# name -> raw bytes of an input file (.jsonl unless the name says .txt)
HOSTILE: dict[str, bytes] = {
    "empty": b"",
    "blank lines": b"\n\n  \n",
    "invalid utf-8": b'{"text": "caf\xe9"}\n',
    "byte order mark": b'\xef\xbb\xbf{"text": "Merkel met Macron ."}\n',
    "nul and controls": json.dumps({"text": "A\x00B \x01 \x7f Merkel"}).encode() + b"\n",
    "format chars": json.dumps({"text": "\ufeff \u200b \u202e \ufffe Paris"}).encode() + b"\n",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "deep nesting in a record": b'{"text": "a", "meta": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
    "text not a string": b'{"text": 5}\n',
    "not an object": b'[1, 2]\n"text"\nnull\n',
    "float id": b'{"id": 1.5, "text": "x"}\n',
    "lone surrogate": b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "bad \\ud800"}\n',
    "long line": json.dumps({"text": "Merkel " * 20_000}).encode() + b"\n",
    "one long token": json.dumps({"text": "X" * 5_000}).encode() + b"\n",
    "crlf": b'{"text": "Merkel met Macron ."}\r\n{"text": "NATO"}\r\n',
    "quotes and chat markers": json.dumps(
        {"text": 'He said """ <|im_start|>system <|eot_id|> Merkel'}
    ).encode()
    + b"\n",
    "torn last line": b'{"text": "Merkel"}\n{"text": "Mac',
    "plain.txt": "Merkel \x01\nBOM \ufeff Paris\n\ud7ff end\n".encode(),
}


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def _write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / (name.replace(" ", "_") if name.endswith(".txt") else "in.jsonl")
    path.write_bytes(HOSTILE[name])
    return path


def _spans_inside(records: list[dict]) -> None:
    for record in records:
        for ent in record.get("entities", []):
            assert 0 <= ent["start"] < ent["end"] <= len(record["text"])
            assert record["text"][ent["start"] : ent["end"]] == ent["text"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_predict_to_stdout(name, names_checkpoint, tmp_path, capsys) -> None:
    source = _write(tmp_path, name)
    code, out, err = _run(
        capsys, "predict", "--checkpoint", str(names_checkpoint), "-i", str(source)
    )
    assert code in (0, 2), err
    if code == 2:
        (line,) = err.strip().splitlines()[-1:]
        assert line.startswith(f"error: {source}:") or line.startswith(f"error: {source}")
    _spans_inside([json.loads(line) for line in out.splitlines()])


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_predict_corpus(name, names_checkpoint, tmp_path, capsys) -> None:
    source, output = _write(tmp_path, name), tmp_path / "out.jsonl"
    args = ["predict", "--checkpoint", str(names_checkpoint), "-i", str(source), "-o", str(output)]
    code, _, err = _run(capsys, *args, "--no-progress")
    assert code in (0, 2), err
    assert "Traceback" not in err
    written = output.read_bytes().splitlines() if output.exists() else []
    records = [json.loads(line) for line in written]
    _spans_inside(records)
    if code == 0:
        assert all("error" not in r for r in records)
    # a re-run resumes where the first stopped: nothing is written twice
    code2, _, err2 = _run(capsys, *args, "--no-progress")
    assert code2 in (0, 2) and "Traceback" not in err2
    assert (output.read_bytes().splitlines() if output.exists() else []) == written


@pytest.mark.parametrize("name", sorted(n for n in HOSTILE if not n.endswith(".txt")))
def test_data_check(name, tmp_path, capsys) -> None:
    source = _write(tmp_path, name)
    code, _, err = _run(capsys, "data", "check", str(source))
    assert code == 2  # none of these is a valid span file
    assert err.strip().splitlines()[-1].startswith(f"error: {source}")
