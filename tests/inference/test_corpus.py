"""`cdlm predict --input corpus.jsonl --output out.jsonl`: streamed, records kept whole and in
order, the same with 2 workers as with 1, resumed after a real kill (duplicate ids included),
records the model cannot take answered alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cdlm.config import CorpusConfig
from cdlm.data.resume import sidecar_path
from cdlm.inference.corpus import PredictorSpec, predict_corpus
from cdlm.inference.model import CDLM

REPO = Path(__file__).resolve().parents[2]
# One batch size for every run compared byte for byte (a batch pads its texts together).
BATCHES = CorpusConfig(batch_size=4)


@pytest.fixture(scope="module")
def corpus(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 politics sentences as JSON Lines records with other fields and a document id that
    repeats (four sentences a document), as corpora split into sentences have."""
    from cdlm.data.registry import load_split

    sentences = load_split("politics", "train", small_crossner)[:40]
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for k, s in enumerate(sentences):
            record = {"id": f"doc-{k // 4}", "text": " ".join(s.tokens), "meta": {"n": k}}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _same_run(out: Path, reference: Path) -> None:
    """Claim ``out`` as the reference run did (its sidecar), as an interrupted run leaves it."""
    shutil.copy(sidecar_path(reference), sidecar_path(out))


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
    """Kill `cdlm predict` (SIGKILL) while it waits for more input on a FIFO the test feeds,
    after two batches are written; run it again: every record exactly once, in order, the same
    as an uninterrupted run, although each id repeats four times."""
    lines = corpus.read_bytes().splitlines(keepends=True)
    fifo = tmp_path / "input.jsonl"
    os.mkfifo(fifo)
    out = tmp_path / "out.jsonl"
    config = tmp_path / "small_batches.toml"
    config.write_text(f"[corpus]\nbatch_size = {BATCHES.batch_size}\n", encoding="utf-8")
    cmd = [
        *(sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_checkpoint)),
        *("--input", str(fifo), "--input-format", "jsonl", "--output", str(out)),
        *("--config", str(config), "--no-progress", "--threads", "1"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = 2 * BATCHES.batch_size
    try:
        with open(fifo, "wb") as feed:  # blocks until cdlm opens it
            feed.write(b"".join(lines[: first + 1]))  # two whole batches and one more record
            feed.flush()
            # cdlm now waits for the rest of the third batch: it writes the first two and can
            # go no further. (A bounded wait for that state, not a timed race.)
            for _ in range(6000):
                if (
                    out.exists()
                    and out.read_bytes().count(b"\n") >= first
                    or proc.poll() is not None
                ):
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    except BrokenPipeError:
        pass
    finally:
        proc.kill()
        proc.wait()
    assert out.read_bytes().count(b"\n") == first, proc.stderr.read().decode()

    def feed_all() -> None:
        with open(fifo, "wb") as feed:
            feed.write(b"".join(lines))

    writer = threading.Thread(target=feed_all)
    writer.start()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    writer.join()
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming; {first} records are done" in rerun.stderr
    assert [r["meta"]["n"] for r in _read(out)] == list(range(len(lines)))
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_cuts_a_torn_line_and_skips_done_records(
    corpus: Path, reference: Path, tiny_checkpoint: Path, tmp_path: Path, workers: int
) -> None:
    """An interrupted run's state (30 records and half a line; ids repeat) resumed with one
    worker or two: every record once, the same bytes as an uninterrupted run."""
    lines = reference.read_bytes().splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(lines[:30]) + lines[30][: len(lines[30]) // 2])  # torn write
    _same_run(out, reference)
    result = predict_corpus(str(corpus), out, _spec(tiny_checkpoint), fmt="jsonl",
                            workers=workers, config=BATCHES, progress=False)  # fmt: skip
    assert (result.already, result.skipped, result.written) == (30, 30, len(lines) - 30)
    assert result.torn_bytes == len(lines[30]) // 2
    assert out.read_bytes() == reference.read_bytes()


def test_records_the_model_cannot_take_answer_alone(tiny_checkpoint: Path, tmp_path: Path):
    """A lone surrogate (JSON "\\ud800") and an over-long text are answered with an `error`
    field and named FILE:LINE; their batch-mates get their entities; the command exits 2."""
    corpus = tmp_path / "in.jsonl"
    records = [
        {"id": 1, "text": "Merkel met Macron ."},
        {"id": 2, "text": "broken \ud800 emoji"},
        {"id": 3, "text": "x" * 60},
        {"id": 4, "text": "Biden visited Paris ."},
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    config = tmp_path / "limits.toml"
    config.write_text("[corpus]\nmax_text_chars = 50\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_checkpoint)]
    for workers in ("1", "2"):
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)
        proc = subprocess.run(
            [*cmd, "--input", str(corpus), "--output", str(out), "--config", str(config),
             "--no-progress", "--workers", workers],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"{corpus}:2: answered with an error: text holds a lone surrogate" in proc.stderr
        assert f"{corpus}:3: answered with an error: text of 60 characters" in proc.stderr
        got = _read(out)
        assert [r["id"] for r in got] == [1, 2, 3, 4]
        assert (
            "error" in got[1]
            and "entities" not in got[1]
            and got[1]["text"] == "broken \ud800 emoji"
        )
        assert "error" in got[2] and "entities" not in got[2]
        assert "error" not in got[0] and "entities" in got[0] and "entities" in got[3]
    # stdout mode: the same record stops the run with one line naming it
    proc = subprocess.run([*cmd, "--input", str(corpus), "--config", str(config)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {corpus}:2: text holds a lone")


def test_the_input_is_never_the_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """`-i X -o X` (with or without --overwrite, or through a link) leaves X as it was."""
    x = tmp_path / "x.jsonl"
    x.write_bytes(b'{"id": 1, "text": "Merkel met Macron ."}\n{"id": 2, "text": "no newline"}')
    link = tmp_path / "link.jsonl"
    link.symlink_to(x)
    cmd = [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_checkpoint)]
    for output, extra in ((x, []), (x, ["--overwrite"]), (link, ["--overwrite"])):
        proc = subprocess.run([*cmd, "-i", str(x), "-o", str(output), "--no-progress", *extra],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 2 and "--output is the input file" in proc.stderr
        assert x.read_bytes().endswith(b'"no newline"}') and x.stat().st_size > 40


def test_the_run_header_keeps_what_shapes_the_output() -> None:
    """A resume may change batch sizes or the corpus/serve settings, never the model, domain,
    LLM or routing: those are in the run header it is checked against."""
    from cdlm.config import CdlmConfig
    from cdlm.inference.corpus import _options

    spec = PredictorSpec(model="m", domain="music", config=CdlmConfig().model_dump(mode="json"))
    options = _options(spec)
    assert options["model"] == "m" and options["domain"] == "music"
    assert "batch_size" not in options
    assert {"llm", "routing", "predict"} <= set(options["config"])
    assert not {"corpus", "serve"} & set(options["config"])
