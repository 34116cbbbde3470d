"""`cdlm predict --input corpus.jsonl --output out.jsonl`: streamed, records kept whole and in
order, the same with 2 workers as with 1, resumed after a real kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdlm.config import CorpusConfig
from cdlm.inference.corpus import PredictorSpec, predict_corpus
from cdlm.inference.model import CDLM

REPO = Path(__file__).resolve().parents[2]
# One batch size for every run compared byte for byte (a batch pads its texts together).
BATCHES = CorpusConfig(batch_size=4)


@pytest.fixture(scope="module")
def corpus(crossner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real politics dev sentences as JSON Lines records with an id and other fields."""
    from cdlm.data.registry import load_split

    sentences = load_split("politics", "dev", crossner_dir)[:40]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for k, s in enumerate(sentences):
            record = {"id": f"doc-{k}", "text": " ".join(s.tokens), "meta": {"n": k, "tags": []}}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _spec(checkpoint: Path) -> PredictorSpec:
    return PredictorSpec(model=str(checkpoint))


@pytest.fixture(scope="module")
def reference(corpus: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """The output of one uninterrupted run, one worker, in this process."""
    out = tmp_path_factory.mktemp("reference") / "out.jsonl"
    result = predict_corpus(str(corpus), out, _spec(tiny_checkpoint), fmt="jsonl", threads=1,
                            config=BATCHES, progress=False)  # fmt: skip
    assert result.written == len(_read(corpus)) and result.skipped == 0
    return out


def test_records_keep_id_fields_and_order(corpus: Path, reference: Path, tiny_checkpoint: Path):
    records, inputs = _read(reference), _read(corpus)
    assert len(records) == len(inputs)
    for got, given in zip(records, inputs, strict=True):
        assert {k: got[k] for k in given} == given  # id, text and meta kept as they were
        for e in got["entities"]:
            assert got["text"][e["start"] : e["end"]] == e["text"]
    # the same entities as the model object gives for the same texts
    model = CDLM.from_pretrained(tiny_checkpoint)
    assert [r["entities"] for r in records] == model.predict([r["text"] for r in inputs])
    assert sum(len(r["entities"]) for r in records) > 0


def test_two_workers_write_the_same_file_as_one(
    corpus: Path, reference: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    two = tmp_path / "two.jsonl"
    predict_corpus(str(corpus), two, _spec(tiny_checkpoint), fmt="jsonl", workers=2,
                   config=BATCHES, progress=False)  # fmt: skip
    assert two.read_bytes() == reference.read_bytes()


def test_memory_stays_bounded_on_a_stream(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Reading a pipe (a generator), the run never reads more than the batches in flight ahead
    of what it has written: the input is not held in memory."""
    out = tmp_path / "out.jsonl"
    batch, total = 4, 40
    ahead: list[int] = []

    def pipe():
        for k in range(total):
            written = len(out.read_bytes().splitlines()) if out.exists() else 0
            ahead.append(k - written)
            yield (json.dumps({"id": k, "text": f"Merkel met Macron {k} times ."}) + "\n").encode()

    result = predict_corpus("<pipe>", out, _spec(tiny_checkpoint), fmt="jsonl", lines=pipe(),
                            config=CorpusConfig(batch_size=batch), progress=False)  # fmt: skip
    assert result.written == total and [r["id"] for r in _read(out)] == list(range(total))
    assert max(ahead) <= batch  # one worker: one batch read ahead at most


def test_plain_text_input_and_bad_lines(tiny_checkpoint: Path, tmp_path: Path) -> None:
    texts = tmp_path / "texts.txt"
    texts.write_text("Merkel met Macron.\n\nThe SPD won.\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    predict_corpus(str(texts), out, _spec(tiny_checkpoint), fmt="text", progress=False)
    assert [r["text"] for r in _read(out)] == ["Merkel met Macron.", "", "The SPD won."]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "ok"}\n{"id": 2, "txt": "typo"}\n', encoding="utf-8")
    cmd = [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_checkpoint)]
    for workers in ("1", "2"):
        done = tmp_path / f"o{workers}.jsonl"
        proc = subprocess.run(
            [*cmd, "--input", str(bad), "--output", str(done), "--no-progress",
             "--workers", workers],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"error: {bad}:2: field 'text': expected a string, got nothing"
        )
        assert "Traceback" not in proc.stderr
        # the record before the bad line (same batch) is written; a fixed file resumes after it
        assert [r["id"] for r in _read(done)] == [1], workers


def test_resume_after_a_real_kill(
    corpus: Path, reference: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Kill `cdlm predict` (SIGKILL) once it has written part of the file, run it again: every
    record exactly once, in order, the same as an uninterrupted run."""
    out = tmp_path / "out.jsonl"
    config = tmp_path / "small_batches.toml"
    config.write_text(f"[corpus]\nbatch_size = {BATCHES.batch_size}\n", encoding="utf-8")
    cmd = [
        *(sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_checkpoint)),
        *("--input", str(corpus), "--output", str(out), "--config", str(config)),
        *("--no-progress", "--threads", "1"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while proc.poll() is None:  # until some records are written (or it ends by itself)
            if out.exists() and out.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    first = out.read_bytes().count(b"\n")
    total = len(_read(corpus))
    assert 4 <= first < total, "the kill came after the run had finished"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming; {first} records are done" in rerun.stderr
    assert [r["id"] for r in _read(out)] == [f"doc-{k}" for k in range(total)]
    assert out.read_bytes() == reference.read_bytes()


def test_resume_cuts_a_torn_line_and_skips_done_ids(
    corpus: Path, reference: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    lines = reference.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(lines[:30]) + lines[30][: len(lines[30]) // 2])  # torn write
    result = predict_corpus(str(corpus), out, _spec(tiny_checkpoint), fmt="jsonl",
                            config=BATCHES, progress=False)  # fmt: skip
    assert (result.already, result.skipped, result.written) == (30, 30, len(lines) - 30)
    assert result.torn_bytes == len(lines[30]) // 2
    assert out.read_bytes() == reference.read_bytes()
