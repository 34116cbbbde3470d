"""Corpus input read lazily: one record per line, never the whole file in memory.

Two formats (:func:`input_format` picks one from the file name unless told):

- ``text``: every line is one text, ``{"text": line}``; an empty line is an empty text (so the
  output has one record per input line, as ``cdlm predict`` always printed);
- ``jsonl``: every line is a JSON object with a string ``"text"``; its other fields (``id``,
  metadata) travel with it to the output. Blank lines are skipped.

A bad line stops the run with one line naming the file and line (:class:`LineError` carries the
message; the reader adds where). A well-formed record whose text the model cannot take (longer
than ``corpus.max_text_chars``, or holding a lone surrogate, what a JSON ``"\\ud800"`` from a
truncated emoji becomes) is not a bad line: :func:`record_problem` says why, and the run answers
that record alone with an ``error`` field (:func:`error_record`) instead of losing its batch.

Lines are split on ``\\n`` only, so a JSON string holding a Unicode line separator (U+2028,
allowed by JSON) stays one record.

:func:`line_range` reads the lines that *start* inside a byte range, so several readers (Ray
read tasks) can share one file without overlap or gaps.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from cdlm.errors import DataError

Format = Literal["text", "jsonl"]
FORMATS: tuple[str, ...] = ("auto", "text", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
STDIN = "-"
Record = dict[str, Any]


class LineError(ValueError):
    """What is wrong with one input line (the caller knows which file and line)."""


def input_format(source: str, fmt: str = "auto") -> Format:
    """``text`` or ``jsonl``: as given, else from the suffix (``.jsonl``/``.ndjson``)."""
    if fmt not in FORMATS:
        raise DataError(f"--input-format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt != "auto":
        return fmt  # type: ignore[return-value]
    return "jsonl" if Path(source).suffix.lower() in JSONL_SUFFIXES else "text"


def parse_line(raw: bytes, fmt: Format) -> Record | None:
    """The record of one raw line (line end included or not); ``None`` for a blank JSONL line.

    Raises :class:`LineError` for bad UTF-8, bad JSON, a non-object, a missing or non-string
    ``text`` or an ``id`` that is not a string or an integer."""
    try:
        line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise LineError("not valid UTF-8") from None
    if fmt == "text":
        return {"text": line}
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:
        raise LineError("JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise LineError(f"expected a JSON object with a 'text' field, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        got = "nothing" if "text" not in record else type(text).__name__
        raise LineError(f"field 'text': expected a string, got {got}")
    if "id" in record and (
        isinstance(record["id"], bool) or not isinstance(record["id"], str | int)
    ):
        raise LineError(f"field 'id': expected a string or an integer, got {record['id']!r:.40}")
    return record


def record_problem(record: Record, max_chars: int) -> str | None:
    """Why the model cannot take this record's text (``None``: it can)."""
    text = record["text"]
    if len(text) > max_chars:
        return f"text of {len(text)} characters exceeds corpus.max_text_chars ({max_chars})"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text holds a lone surrogate at character {exc.start} (not Unicode text)"
    return None


def error_record(record: Record, problem: str) -> Record:
    """The output record of an input the model could not take: its fields and the reason,
    and no ``entities`` (an empty list would read as "no entities found")."""
    return {**record, "error": problem}


def _open(source: str) -> IO[bytes]:
    if source == STDIN:
        return sys.stdin.buffer
    try:
        return open(source, "rb")  # noqa: SIM115 (closed by the caller's generator)
    except OSError as exc:
        raise DataError(f"{source}: cannot read input ({exc.strerror or exc})") from None


def read_records(
    source: str, fmt: Format, *, lines: Iterable[bytes] | None = None
) -> Iterator[tuple[int, int, Record]]:
    """``(line number, bytes read so far, record)`` for every record of ``source`` (a path or
    ``-`` for stdin), lazily. ``lines`` reads from any iterable of raw lines instead (a pipe, a
    generator); ``source`` then only names it in messages."""
    name = "<stdin>" if source == STDIN else source
    handle = None
    if lines is None:
        handle = _open(source)
        lines = handle
    position = 0
    try:
        for number, raw in enumerate(lines, start=1):
            position += len(raw)
            try:
                record = parse_line(raw, fmt)
            except LineError as exc:
                raise DataError(f"{name}:{number}: {exc}") from None
            if record is not None:
                yield number, position, record
    finally:
        if handle is not None and handle is not sys.stdin.buffer:
            handle.close()


def line_range(path: str, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset after the line, raw line)`` for the lines of ``path`` that start at a byte
    offset in ``[start, end)``, in order.

    A range that begins inside a line skips that line's rest (the range before owns it); the
    last line may run past ``end``. Ranges that tile the file read every line exactly once."""
    with open(path, "rb") as fh:
        if start > 0:
            fh.seek(start - 1)
            fh.readline()  # the rest of a line that started before `start` (or just its "\n")
        while fh.tell() < end:
            raw = fh.readline()
            if not raw:
                break
            yield fh.tell(), raw


def byte_ranges(size: int, chunk: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of at most ``chunk`` bytes that tile ``size`` bytes."""
    return [(a, min(a + chunk, size)) for a in range(0, size, chunk)] or [(0, 0)]
