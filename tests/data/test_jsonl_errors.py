"""Every kind of bad span JSONL record, through the ``cdlm`` console entry point
(:func:`cdlm.cli.main`, in-process for speed; two cases also as a real subprocess): one stderr
line ``error: FILE:LINE: ...``, exit 2, no traceback, and the output file is not created."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOOD = {"text": "Angela Merkel met Macron", "spans": [{"start": 0, "end": 13, "label": "person"}]}
T = "Angela Merkel met Macron"


def _span(start: object, end: object, label: object = "person") -> dict:
    return {"start": start, "end": end, "label": label}


# (id, bad line, expected message after "error: FILE:3: ")
CASES = [
    ("invalid-json", '{"text": "a", "spans": [}', "invalid JSON (Expecting value at column 25)"),
    ("not-an-object", '["a"]', "expected a JSON object, got list"),
    ("missing-text", {"spans": []}, "missing field 'text'"),
    ("text-not-string", {"text": 5, "spans": []}, "field 'text' must be a string, got int"),
    (
        "no-spans-field",
        {"text": T},
        "no entities field: expected one of 'spans', 'entities', 'label' (an empty list for none)",
    ),
    (
        "spans-not-list",
        {"text": T, "spans": {"start": 0}},
        "field 'spans' must be a list of spans, got dict",
    ),
    (
        "span-missing-end",
        {"text": T, "spans": [{"start": 0, "label": "x"}]},
        "spans[0] has no 'end'",
    ),
    (
        "offset-not-int",
        {"text": T, "spans": [_span("0", 6)]},
        "spans[0] start must be an integer, got str '0'",
    ),
    (
        "offset-float",
        {"text": T, "spans": [_span(0, 6.0)]},
        "spans[0] end must be an integer, got float 6.0",
    ),
    (
        "doccano-wrong-arity",
        {"text": T, "label": [[0, 6]]},
        "label[0] must be [start, end, label], got [0, 6]",
    ),
    (
        "outside-text",
        {"text": T, "spans": [_span(18, 99)]},
        "spans[0] [18, 99) is outside the text (length 24) or empty (start must be < end)",
    ),
    (
        "negative-start",
        {"text": T, "spans": [_span(-1, 6)]},
        "spans[0] [-1, 6) is outside the text (length 24) or empty (start must be < end)",
    ),
    (
        "start-not-before-end",
        {"text": T, "spans": [_span(6, 6)]},
        "spans[0] [6, 6) is outside the text (length 24) or empty (start must be < end)",
    ),
    (
        "overlap",
        {"text": T, "spans": [_span(7, 13), _span(0, 13)]},
        "spans overlap: [0, 13) person 'Angela Merkel' and [7, 13) person 'Merkel' (BIO cannot "
        "hold nested or overlapping entities)",
    ),
    (
        "duplicate",
        {"text": T, "entities": [[0, 6, "person"], [0, 6, "person"]]},
        "spans overlap: [0, 6) person 'Angela' and [0, 6) person 'Angela' (BIO cannot hold "
        "nested or overlapping entities)",
    ),
    (
        "cuts-a-token",
        {"text": T, "spans": [_span(0, 5)]},
        "span [0, 5) person 'Angel' cuts the token 'Angela' [0, 6); fix its offsets or "
        "give the record its own 'tokens' (spans are never moved)",
    ),
    (
        "starts-on-whitespace",
        {"text": T, "spans": [_span(6, 13)]},
        "span [6, 13) person ' Merkel' starts with whitespace; fix its offsets or give "
        "the record its own 'tokens' (spans are never moved)",
    ),
    (
        "span-text-differs",
        {"text": T, "spans": [{**_span(0, 6), "text": "Angie"}]},
        "spans[0] text 'Angie' differs from text[0:6] = 'Angela'",
    ),
    (
        "bio-prefixed-label",
        {"text": T, "spans": [_span(0, 6, "B-person")]},
        "spans[0] label 'B-person' looks like a BIO tag; give the entity type alone (e.g. "
        "'person')",
    ),
    (
        "dash-label",
        {"text": T, "spans": [_span(0, 6, "-person")]},
        "spans[0] label '-person' looks like a BIO tag; give the entity type alone (e.g. 'person')",
    ),
    (
        "outside-label",
        {"text": T, "spans": [_span(0, 6, "O")]},
        "spans[0] label 'O' means no entity; leave the span out",
    ),
    ("empty-label", {"text": T, "spans": [_span(0, 6, " ")]}, "spans[0] has an empty label"),
    (
        "label-not-string",
        {"text": T, "spans": [_span(0, 6, 3)]},
        "spans[0] label must be a string, got int",
    ),
    (
        "two-span-fields",
        {"text": T, "spans": [], "label": []},
        "both 'spans' and 'label' given; keep one",
    ),
    ("empty-text", {"text": "  ", "spans": []}, "text has no tokens (empty or whitespace only)"),
    (
        "tokens-leave-a-gap",
        {"text": "a b", "spans": [], "tokens": [{"text": "a", "start": 0, "end": 1}]},
        "tokens do not cover the end of the text ' b'",
    ),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per case: two good records (line 2 blank), the bad one on line 3."""
    folder = tmp_path_factory.mktemp("bad_jsonl")
    files = {}
    for name, bad, _ in CASES:
        line = bad if isinstance(bad, str) else json.dumps(bad)
        path = folder / f"{name}.jsonl"
        path.write_text(f"{json.dumps(GOOD)}\n\n{line}\n{json.dumps(GOOD)}\n", encoding="utf-8")
        files[name] = path
    return files


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str):
    """Run the console entry point in this process: (exit code, stdout, stderr)."""
    from cdlm.cli import main

    monkeypatch.setattr(sys, "argv", ["cdlm", *args])
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.mark.parametrize(("name", "bad", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_record(
    name: str,
    bad: object,
    message: str,
    bad_files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    path = bad_files[name]
    out = path.with_name(f"{name}.out.txt")
    code, stdout, stderr = _main(monkeypatch, capsys, "data", "convert", str(path), str(out))
    assert code == 2, stdout + stderr
    assert stderr.splitlines() == [f"error: {path}:3: {message}"]
    assert not out.exists() and not list(path.parent.glob(f".{out.name}*"))


def test_real_process(bad_files: dict[str, Path], cdlm_cli) -> None:
    path = bad_files["invalid-json"]
    out = path.with_name("real.txt")
    proc = cdlm_cli("data", "convert", str(path), str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"error: {path}:3: {CASES[0][2]}"]
    assert not out.exists()


def test_check_and_train_read_the_same_way(
    bad_files: dict[str, Path], tmp_path: Path, cdlm_cli
) -> None:
    """`cdlm data check` stops on the same line; a training folder whose train.jsonl is bad
    stops before any training."""
    path = bad_files["overlap"]
    proc = cdlm_cli("data", "check", str(path))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {path}:3: spans overlap")
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(path.read_bytes())
    runs = tmp_path / "runs"
    proc = cdlm_cli(
        "train", "--target", str(folder), "--source-epochs", "0", "--runs-dir", str(runs)
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: {folder / 'train.jsonl'}:3: spans overlap: [0, 13) person 'Angela Merkel' and "
        "[7, 13) person 'Merkel' (BIO cannot hold nested or overlapping entities)"
    ]
    assert not runs.exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".txt"], ids=["jsonl", "bio"])
def test_deeply_nested_json_is_one_line(tmp_path: Path, cdlm_cli, suffix: str) -> None:
    """100k levels of ``[`` (a RecursionError inside json.loads): one line naming FILE:LINE,
    exit 2, no traceback -- read as JSONL, or sniffed as JSON by the BIO reader."""
    path = tmp_path / f"deep{suffix}"
    deep = "[" * 100_000 + "]" * 100_000
    if suffix == ".jsonl":
        path.write_text(f"{json.dumps(GOOD)}\n{deep}\n", encoding="utf-8")
    else:
        path.write_text(f'{{"text": {deep}}}\n', encoding="utf-8")
    proc = cdlm_cli("data", "check", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    line = 2 if suffix == ".jsonl" else 1
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:{line}: "), lines[:3]
    if suffix == ".jsonl":
        assert "nested too deeply" in lines[0]
