"""Resuming an output file: a torn last line is cut off, done records are known by id or by
count, and a file that is not ours is an error rather than repaired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.data.resume import resume_state
from cdlm.errors import DataError


def _line(record: dict) -> bytes:
    return (json.dumps(record) + "\n").encode()


def test_torn_last_line_is_cut_and_done_ids_are_read(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = [{"id": "a", "text": "x"}, {"id": 1, "text": "y"}, {"text": "no id"}]
    torn = b'{"id": "b", "text": "half'
    out.write_bytes(b"".join(_line(r) for r in done) + torn)
    state = resume_state(out)
    assert state.torn_bytes == len(torn)
    assert out.read_bytes() == b"".join(_line(r) for r in done)  # repaired, nothing else lost
    assert state.records == 3 and state.anonymous == 1
    assert state.skip({"id": "a"}) and state.skip({"id": 1})
    assert not state.skip({"id": "1"}) and not state.skip({"id": "b"})  # "1" is not 1
    # the first record without an id is done, the next one is not
    assert state.skip({"text": "no id"}) and not state.skip({"text": "another"})
    assert resume_state(out).torn_bytes == 0  # a second resume finds nothing to cut


def test_missing_output_is_a_fresh_start(tmp_path: Path) -> None:
    state = resume_state(tmp_path / "none.jsonl")
    assert state.records == 0 and not state.skip({"id": 1}) and not state.skip({"text": "a"})


def test_garbage_inside_the_file_is_an_error_not_a_repair(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    content = _line({"id": 1, "text": "a"}) + b"not json\n" + _line({"id": 2, "text": "b"})
    out.write_bytes(content)
    with pytest.raises(DataError, match=rf"{out}:2: not a JSON line.*--overwrite"):
        resume_state(out)
    assert out.read_bytes() == content  # untouched
