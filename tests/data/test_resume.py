"""The output of a corpus run: claimed by a sidecar, resumed by position with ids and texts
cross-checked, a torn line cut only in a file cdlm wrote, and nothing else ever touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cdlm.data.resume import RunHeader, check_not_input, open_output, sidecar_path
from cdlm.errors import DataError


def _line(record: dict) -> bytes:
    return (json.dumps(record) + "\n").encode()


def _header(source: str = "in.jsonl", **options) -> RunHeader:
    return RunHeader(input=source, input_format="jsonl", options={"model": "m", **options})


def test_fresh_output_is_claimed_by_its_sidecar(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.jsonl"
    state = open_output(out, _header())
    assert state.records == 0 and out.read_bytes() == b""
    saved = json.loads(sidecar_path(out).read_text())
    assert saved["writer"] == "cdlm predict" and saved["options"] == {"model": "m"}


def test_torn_last_line_is_cut_in_a_file_cdlm_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    open_output(out, _header())
    done = [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}, {"text": "no id"}]
    torn = b'{"id": "b", "text": "half'
    out.write_bytes(b"".join(_line(r) for r in done) + torn)
    state = open_output(out, _header())
    assert (state.records, state.torn_bytes) == (3, len(torn))
    assert out.read_bytes() == b"".join(_line(r) for r in done)  # repaired, nothing else lost
    for k, record in enumerate(done):  # the same records in the same order pass the check
        state.check(record, f"in.jsonl:{k + 1}")
    assert open_output(out, _header()).torn_bytes == 0  # a second resume finds nothing to cut


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_file_cdlm_did_not_write_is_never_touched(tmp_path: Path, overwrite: bool) -> None:
    """Someone's one-line JSON file without a final newline: not cut, not resumed, not
    overwritten, with or without --overwrite."""
    out = tmp_path / "theirs.json"
    out.write_bytes(b'{"precious": true}')
    with pytest.raises(DataError, match=rf"^{out}: exists and was not written by `cdlm predict`"):
        open_output(out, _header(), overwrite=overwrite)
    assert out.read_bytes() == b'{"precious": true}'
    assert not sidecar_path(out).exists()


def test_an_empty_existing_file_may_be_claimed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.touch()  # e.g. made by mktemp: nothing in it to lose
    assert open_output(out, _header()).records == 0 and sidecar_path(out).is_file()


def test_overwrite_restarts_only_a_claimed_file(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    open_output(out, _header())
    out.write_bytes(_line({"id": 1, "text": "a"}))
    state = open_output(out, _header(domain="music"), overwrite=True)
    assert state.records == 0 and out.read_bytes() == b""
    assert json.loads(sidecar_path(out).read_text())["options"]["domain"] == "music"


def test_a_resume_with_other_options_or_input_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    open_output(out, _header())
    out.write_bytes(_line({"id": 1, "text": "a"}))
    with pytest.raises(DataError, match=r"other options \(domain\); pass --overwrite"):
        open_output(out, _header(domain="music"))
    with pytest.raises(DataError, match=r"another input or with other options \(input\)"):
        open_output(out, _header("other.jsonl"))
    assert out.read_bytes() == _line({"id": 1, "text": "a"})


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_the_input_is_never_the_output(tmp_path: Path, how: str) -> None:
    source = tmp_path / "x.jsonl"
    source.write_bytes(b'{"text": "no final newline"}')
    out = {"same path": source, "symlink": tmp_path / "l.jsonl", "hard link": tmp_path / "h"}[how]
    if how == "symlink":
        out.symlink_to(source)
    elif how == "hard link":
        os.link(source, out)
    with pytest.raises(DataError, match=r"--output is the input file"):
        check_not_input(str(source), out)
    check_not_input(str(source), tmp_path / "other.jsonl")  # another file is fine
    assert source.read_bytes() == b'{"text": "no final newline"}'


def test_garbage_inside_a_claimed_file_is_an_error_not_a_repair(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    open_output(out, _header())
    content = _line({"id": 1, "text": "a"}) + b"not json\n" + _line({"id": 2, "text": "b"})
    out.write_bytes(content)
    with pytest.raises(DataError, match=rf"{out}:2: not a JSON line.*--overwrite"):
        open_output(out, _header())
    assert out.read_bytes() == content  # untouched


def test_position_check_names_both_lines_when_the_input_changed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    open_output(out, _header())
    out.write_bytes(_line({"id": "d1", "text": "a"}) + _line({"id": "d1", "text": "b"}))
    state = open_output(out, _header())
    state.check({"id": "d1", "text": "a"}, "in.jsonl:1")  # a repeated id is fine
    with pytest.raises(DataError, match=rf"^in.jsonl:2: the input changed .* {out}:2 holds"):
        state.check({"id": "d1", "text": "c"}, "in.jsonl:2")
    state = open_output(out, _header())
    with pytest.raises(DataError, match=r"in.jsonl:1: the input changed"):
        state.check({"id": 1, "text": "a"}, "in.jsonl:1")  # 1 is not "d1"
