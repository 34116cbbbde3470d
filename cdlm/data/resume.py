"""The output file of a corpus run: claimed, checked and resumed without touching anything that
``cdlm predict`` did not write.

- **Ownership.** A run writes a sidecar ``<output>.cdlm.json`` (:class:`RunHeader`: the input,
  its format and the prediction options) before its first output line. An output that exists,
  is not empty and has no sidecar is someone else's file: it is refused, never cut, resumed or
  overwritten. The output may never be the input (same path, or the same file through a link).
- **Resume by position.** Output records are written in input order, one per input record, so
  the first N input records are done when the output holds N records. The ids (and texts) of
  those N are checked against the input's first N as they are skipped (:class:`ResumeState`):
  duplicate ids, common when a document id is repeated on each sentence, are fine, and an input
  that changed since the run started is an error naming both lines. Skipping by id alone would
  count every repeat of a done id as done and lose them.
- **Torn line.** Lines are written whole (one ``write`` per batch, each line ending in ``\\n``;
  JSON escapes newlines inside a record), so a kill can leave at most one torn last line. It is
  cut off (and written again) only in a file this sidecar claims.
- A resume with another input or other options is refused (``--overwrite`` starts afresh);
  a complete line that is not JSON is not a torn write either: an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from cdlm.errors import DataError
from cdlm.results import atomic_write_text

SIDECAR_SUFFIX = ".cdlm.json"
WRITER = "cdlm predict"


class RunHeader(BaseModel):
    """What a corpus run writes beside its output; a resume must match it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    writer: str = WRITER
    input: str  # the input path as resolved (``-`` for stdin)
    input_format: str
    options: dict[str, Any]  # model, domain, threshold, LLM, route ... (no secrets)


def sidecar_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.jsonl.cdlm.json``."""
    return output.with_name(output.name + SIDECAR_SUFFIX)


def input_key(source: str) -> str:
    """How a header names its input: the resolved path, so ``./a`` and ``a`` are one input."""
    return source if source == "-" else str(Path(source).resolve())


def check_not_input(source: str, output: Path) -> None:
    """The output must not be the input: same path, or the same file through links."""
    if source == "-":
        return
    same = Path(source).resolve() == output.resolve()
    if not same and output.exists() and Path(source).exists():
        same = os.path.samefile(source, output)
    if same:
        raise DataError(f"{output}: --output is the input file; write to another file")


@dataclass
class ResumeState:
    """The done part of an output: how many records it holds, read again lazily for the
    position check (:meth:`check`), so memory does not grow with the file."""

    path: Path | None = None
    records: int = 0  # output records done
    torn_bytes: int = 0  # bytes of a torn last line that were cut off
    _done: Iterator[tuple[int, dict[str, Any], int]] | None = None

    def check(self, record: dict[str, Any], where: str) -> None:
        """Cross-check the next done output record against the input ``record`` at the same
        position (``where`` names the input line): same ``id`` (or none) and same ``text``."""
        if self._done is None:
            self._done = _read_records(self.path) if self.path is not None else iter(())
        number, done, _ = next(self._done, (0, None, 0))
        if done is None:
            raise DataError(f"{where}: no output record left to check it against")
        same_id = done.get("id") == record.get("id") and (("id" in done) == ("id" in record))
        if not same_id or done.get("text") != record.get("text"):
            raise DataError(
                f"{where}: the input changed since the run started: {self.path}:{number} holds "
                f"id {done.get('id')!r} for text {str(done.get('text'))[:40]!r}, the input "
                f"id {record.get('id')!r} for {str(record.get('text'))[:40]!r}; "
                "pass --overwrite to start again"
            )


def _read_records(path: Path) -> Iterator[tuple[int, dict[str, Any], int]]:
    """``(line number, record, byte offset after it)`` of every complete line of an output
    file; a torn last line ends the walk."""
    end = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                return
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise DataError(
                    f"{path}:{number}: not a JSON line; this file was not written by an "
                    "interrupted `cdlm predict` (pass --overwrite to start it again)"
                ) from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object (pass --overwrite)")
            end += len(raw)
            yield number, record, end


def _read_header(side: Path, output: Path) -> RunHeader:
    try:
        return RunHeader.model_validate_json(side.read_bytes())
    except (OSError, ValidationError, ValueError):
        raise DataError(
            f"{side}: not a cdlm run header, so {output} is not known to be cdlm's; "
            "choose another --output or remove both files yourself"
        ) from None


def _differences(saved: RunHeader, header: RunHeader) -> list[str]:
    old, new = saved.model_dump(), header.model_dump()
    fields = [k for k in ("input", "input_format") if old[k] != new[k]]
    keys = sorted(set(old["options"]) | set(new["options"]))
    fields += [k for k in keys if old["options"].get(k) != new["options"].get(k)]
    return fields


def open_output(output: Path, header: RunHeader, *, overwrite: bool = False) -> ResumeState:
    """Claim ``output`` for the run of ``header``: a fresh start (sidecar written, output
    emptied) or a resume (torn tail cut, done records counted); see the module doc."""
    side = sidecar_path(output)
    has_data = output.is_file() and output.stat().st_size > 0
    if output.exists() and not output.is_file():
        raise DataError(f"{output}: --output is not a regular file")
    if has_data and not side.is_file():
        raise DataError(
            f"{output}: exists and was not written by `{WRITER}` (no {side.name} beside it); "
            "choose another --output or remove it yourself"
        )
    if has_data and not overwrite:
        saved = _read_header(side, output)
        changed = _differences(saved, header)
        if changed:
            raise DataError(
                f"{output}: was written from another input or with other options "
                f"({', '.join(changed)}); pass --overwrite to start it again"
            )
        return _resume(output)
    if has_data:
        _read_header(side, output)  # only ever overwrite what a cdlm run claims
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(side, header.model_dump_json(indent=2) + "\n")
    with open(output, "wb"):
        pass  # created or emptied, after the header claims it
    return ResumeState(path=output)


def _resume(output: Path) -> ResumeState:
    """Count the done records and cut a torn last line (the file is ours: its sidecar says so)."""
    state = ResumeState(path=output)
    good = 0  # byte offset after the last complete line
    for _, _, end in _read_records(output):
        state.records, good = state.records + 1, end
    size = output.stat().st_size
    if size > good:
        state.torn_bytes = size - good
        with open(output, "r+b") as fh:
            fh.truncate(good)
            fh.flush()
            os.fsync(fh.fileno())
    return state
