"""Resuming a JSON Lines output file that an interrupted run left behind.

Output lines are written whole (one ``write`` per batch, each line ending in ``\\n``; JSON
escapes every newline inside a record), so a kill can leave at most one *torn* last line: bytes
without their ``\\n``. :func:`resume_state` cuts that line off (it is written again), then reads
which records are done:

- records with an ``id``: their ids, skipped wherever they come in the input;
- records without one: how many there are. Output is in input order, so they are the first
  ones of the input that have no ``id`` (:meth:`ResumeState.skip`).

A complete line that is not JSON is not a torn write: that file is not ours to repair, and it is
an error naming the file and line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdlm.errors import DataError


def id_key(value: Any) -> str:
    """A set key for a record id that keeps ``1`` and ``"1"`` apart."""
    return json.dumps(value)


@dataclass
class ResumeState:
    """What an output file already holds; :meth:`skip` says whether an input record is done."""

    ids: set[str] = field(default_factory=set)
    anonymous: int = 0  # output records without an id
    records: int = 0  # output records in all
    torn_bytes: int = 0  # bytes of a torn last line that were cut off
    _anonymous_seen: int = 0

    def skip(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` (an input record, in input order) is already in the output."""
        if "id" in record:
            return id_key(record["id"]) in self.ids
        return self.skip_anonymous()

    def skip_anonymous(self) -> bool:
        """Whether the next input record without an id (in input order) is already done."""
        self._anonymous_seen += 1
        return self._anonymous_seen <= self.anonymous

    def seen(self, record: dict[str, Any]) -> None:
        """Count ``record`` as done (a record written to the output)."""
        self.records += 1
        if "id" in record:
            self.ids.add(id_key(record["id"]))
        else:
            self.anonymous += 1


def resume_state(path: Path | str) -> ResumeState:
    """Read (and repair) the output at ``path``; an empty state when it does not exist."""
    path = Path(path)
    state = ResumeState()
    if not path.exists():
        return state
    good = 0  # byte offset after the last complete line
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break  # torn last line
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(
                    f"{path}:{number}: not a JSON line; this file was not written by an "
                    "interrupted `cdlm predict` (pass --overwrite to start it again)"
                ) from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object (pass --overwrite)")
            state.seen(record)
            good += len(raw)
    size = path.stat().st_size
    if size > good:
        state.torn_bytes = size - good
        with open(path, "r+b") as fh:
            fh.truncate(good)
            fh.flush()
            os.fsync(fh.fileno())
    return state
