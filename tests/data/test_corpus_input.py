"""Corpus input: one record per line, read lazily, bad lines named by file and line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cdlm.data.corpus import (
    LineError,
    byte_ranges,
    input_format,
    line_range,
    parse_line,
    read_records,
)
from cdlm.errors import DataError


def test_input_format_from_suffix_or_flag() -> None:
    assert input_format("a/corpus.jsonl") == "jsonl"
    assert input_format("a/corpus.NDJSON") == "jsonl"
    assert input_format("a/texts.txt") == "text" and input_format("-") == "text"
    assert input_format("a/texts.txt", "jsonl") == "jsonl"
    with pytest.raises(DataError, match="--input-format: expected one of auto, text, jsonl"):
        input_format("x", "csv")


def test_parse_line_keeps_every_field_and_checks_text_and_id() -> None:
    raw = json.dumps({"id": 7, "text": "Merkel\u2028met Macron", "meta": {"a": [1]}}) + "\r\n"
    assert parse_line(raw.encode(), "jsonl") == {
        "id": 7,
        "text": "Merkel\u2028met Macron",
        "meta": {"a": [1]},
    }
    assert parse_line(b"  \n", "jsonl") is None  # blank JSONL lines are skipped
    assert parse_line(b"\n", "text") == {"text": ""}  # an empty text keeps its output line
    bad = {
        b'{"text": 1}': "field 'text': expected a string, got int",
        b'{"id": 1}': "field 'text': expected a string, got nothing",
        b'["a"]': "expected a JSON object with a 'text' field, got list",
        b'{"text": "a", "id": [1]}': "field 'id': expected a string or an integer",
        b'{"text": "a", "id": true}': "field 'id': expected a string or an integer",
        b'{"text": "a"': "not valid JSON",
        b"\xff\xfe": "not valid UTF-8",
    }
    for line, message in bad.items():
        with pytest.raises(LineError, match=message):
            parse_line(line, "jsonl")


def test_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": 3}\n', encoding="utf-8")
    records = read_records(str(path), "jsonl")
    assert next(records)[2] == {"text": "a"}
    assert next(records)[0] == 3  # line numbers count the blank line
    with pytest.raises(DataError, match=rf"^{path}:4: field 'text'"):
        next(records)


def test_reader_is_lazy() -> None:
    """Records come out while the source is still being read: taking 3 records pulls 3 lines
    from an endless generator (a pipe), never the whole input."""
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield json.dumps({"id": pulled, "text": f"text {pulled}"}).encode() + b"\n"

    records = read_records("<pipe>", "jsonl", lines=endless())
    first = [next(records) for _ in range(3)]
    assert [r[2]["id"] for r in first] == [1, 2, 3]
    assert pulled == 3


def test_byte_ranges_read_every_line_once(tmp_path: Path) -> None:
    """Ranges of any size tile the file: every line read exactly once, in order, also when a
    range starts on a line's first byte, inside a line or on its newline."""
    rng = random.Random(0)
    lines = [("x" * rng.randrange(0, 30) + f" {k}\n").encode() for k in range(200)]
    lines[-1] = lines[-1].rstrip(b"\n")  # no final newline
    path = tmp_path / "c.txt"
    path.write_bytes(b"".join(lines))
    size = path.stat().st_size
    for chunk in (1, 2, 7, 64, 1000, size, size + 5):
        got = [raw for a, b in byte_ranges(size, chunk) for _, raw in line_range(str(path), a, b)]
        assert got == lines, chunk
    ends = [end for end, _ in line_range(str(path), 0, size)]
    assert ends[-1] == size and ends == sorted(ends)
