"""Corpus-scale prediction: a JSON Lines (or plain-text) file in, a JSON Lines file out, in
constant memory, resumable, on several processes or a Ray cluster.

    predict_corpus("corpus.jsonl", "out.jsonl", PredictorSpec(model="default"), workers=2)

- **Streaming.** Input is read line by line (:mod:`cdlm.data.corpus`) and sent on in batches of
  ``corpus.batch_size`` records; at most ``workers * (1 + corpus.prefetch)`` batches are in
  flight, so memory does not grow with the file.
- **Records.** Each output record is the input record (its ``id`` and every other field kept)
  with ``entities`` (and ``routing``) added, as :meth:`cdlm.CDLM.stream` returns it.
- **Order.** The output is in input order, whatever the number of workers or the engine (a
  finished batch waits for the ones before it), so ``--workers 2`` writes the same file as
  ``--workers 1``.
- **Resume.** The output is claimed by a sidecar ``<output>.cdlm.json`` that names the input and
  the options (:mod:`cdlm.data.resume`). When the output exists, its N records are the first N
  input records (the output is in input order, one record per input record): a torn last line is
  cut off and written again, and the first N input records are skipped, each checked against
  its output record (same ``id`` and ``text``). An output cdlm did not write, or the input
  itself, is refused; ``overwrite`` starts afresh, and only over a file cdlm wrote.
- **Records the model cannot take** (too long, a lone surrogate) are answered alone with an
  ``error`` field and named ``FILE:LINE`` on stderr; the rest of their batch goes on.
- **Workers.** ``workers=N`` runs N processes (spawned, each loading the model once, each with
  ``threads`` torch threads, 1 by default: on N cores, N one-thread processes beat one N-thread
  process because the encoder's small matrices do not split well across threads). The parent
  only reads, parses and writes. ``engine="ray"`` runs the same batches on Ray Data
  (:mod:`cdlm.inference.ray_engine`).

The model side is a *predictor*: a function ``records -> records`` built in each worker by a
picklable factory (:mod:`cdlm.inference.predictors`).
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cdlm.config import CdlmConfig, CorpusConfig
from cdlm.data.corpus import STDIN, Format, Record, error_record, read_records, record_problem
from cdlm.data.resume import ResumeState, RunHeader, check_not_input, input_key, open_output
from cdlm.errors import CdlmError, ConfigError, DataError
from cdlm.inference.predictors import (
    Predictor,
    PredictorFactory,
    PredictorSpec,
    encode,
    predictor_factory,
    set_threads,
)

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


# --- the local engine: this process, or a pool of spawned processes ------------------------

_worker_predict: Predictor | None = None


def _init_worker(factory: PredictorFactory, threads: int | None) -> None:
    global _worker_predict
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # before torch is imported here
    set_threads(threads)
    _worker_predict = factory()


def _work(batch: list[Record]) -> list[bytes]:
    assert _worker_predict is not None, "worker not initialised"
    return encode(_worker_predict(batch))


def run_local(
    batches: Iterable[list[Record]],
    factory: PredictorFactory,
    *,
    workers: int = 1,
    threads: int | None = None,
    prefetch: int = 2,
) -> Iterator[list[bytes]]:
    """The encoded output of each batch, in input order. ``workers=1`` runs here; more runs a
    pool of spawned processes with at most ``workers * (1 + prefetch)`` batches in flight."""
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    if workers == 1:
        set_threads(threads)
        predict = factory()
        for batch in batches:
            yield encode(predict(batch))
        return
    import multiprocessing

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),  # no forked torch/Ray state
        initializer=_init_worker,
        initargs=(factory, 1 if threads is None else threads),
    )
    window: deque[Future[list[bytes]]] = deque()
    source, bad_input = iter(batches), None
    try:
        while True:
            try:
                batch = next(source)
            except StopIteration:
                break
            except CdlmError as exc:  # a bad input line: the batches before it still count
                bad_input = exc
                break
            window.append(pool.submit(_work, batch))
            if len(window) >= workers * (1 + prefetch):
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if bad_input is not None:
        raise bad_input


# --- the run: read, skip what is done, predict, append in order -----------------------------


@dataclass
class CorpusResult:
    """What one run did."""

    output: str
    written: int  # records written by this run
    skipped: int  # input records already in the output (resume)
    already: int  # records the output held when the run started
    torn_bytes: int  # bytes of a torn last line that were cut off and written again
    seconds: float
    errors: int = 0  # records answered with an `error` field (the model could not take them)
    # Seconds until the first batch was written and its size: what model loading and worker
    # start-up cost; the steady rate leaves them out.
    first_write_s: float = 0.0
    first_batch: int = 0

    @property
    def records_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_records_per_s(self) -> float:
        """Records per second after the first batch was written (start-up left out)."""
        span = self.seconds - self.first_write_s
        return (self.written - self.first_batch) / span if span > 0 else 0.0


@dataclass
class _Batch:
    records: list[Record]  # in input order, the ones the model cannot take included
    position: int  # input bytes read up to the end of this batch
    problems: dict[int, str]  # index in `records` -> why the model cannot take it
    lines: list[int]  # the input line of each record

    def todo(self) -> list[Record]:
        """The records that go to the model."""
        return [r for i, r in enumerate(self.records) if i not in self.problems]

    def merge(self, predicted: list[bytes]) -> list[bytes]:
        """The output lines of the whole batch: predicted ones and error records in order."""
        done = iter(predicted)
        return [
            encode([error_record(r, self.problems[i])])[0] if i in self.problems else next(done)
            for i, r in enumerate(self.records)
        ]


def _batches(
    records: Iterator[tuple[int, int, Record]],
    state: ResumeState,
    size: int,
    max_chars: int,
    name: str,
    skipped: list[int],
) -> Iterator[_Batch]:
    """Batches of ``size`` records not yet done (the first ``state.records``, each checked
    against its output record, are skipped); the records read before a bad line are batched
    (so predicted and written) before its error goes on."""
    batch = _Batch([], 0, {}, [])
    try:
        for number, position, record in records:
            if skipped[0] < state.records:
                state.check(record, f"{name}:{number}")
                skipped[0] += 1
                continue
            problem = record_problem(record, max_chars)
            if problem is not None:
                batch.problems[len(batch.records)] = problem
            batch.records.append(record)
            batch.lines.append(number)
            batch.position = position
            if len(batch.records) >= size:
                yield batch
                batch = _Batch([], position, {}, [])
    except CdlmError:
        if batch.records:
            yield batch
        raise
    if skipped[0] < state.records:
        raise DataError(
            f"{name}: holds {skipped[0]} records, fewer than the {state.records} the output "
            "holds already (the input changed since the run started); pass --overwrite"
        )
    if batch.records:
        yield batch


class _Problems:
    """Names each record answered with an error on stderr (``FILE:LINE: ...``), the first
    ``shown`` of them, then only counts."""

    def __init__(self, name: str, shown: int = 20) -> None:
        self.name, self.shown, self.count = name, shown, 0

    def report(self, line: int, problem: str) -> None:
        self.count += 1
        if self.count <= self.shown:
            print(f"{self.name}:{line}: answered with an error: {problem}", file=sys.stderr)
        elif self.count == self.shown + 1:
            print(f"{self.name}: more records answered with an error ...", file=sys.stderr)


def _progress(enabled: bool, total: int | None):  # -> rich.progress.Progress
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns: list[Any] = [TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), DownloadColumn(), TimeRemainingColumn()]
    columns += [
        TextColumn("{task.fields[records]} records"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=False)


def predict_corpus(
    source: str,
    output: Path | str,
    factory: PredictorFactory | PredictorSpec,
    *,
    fmt: Format,
    workers: int = 1,
    threads: int | None = None,
    engine: str = "local",
    config: CorpusConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    lines: Iterable[bytes] | None = None,
) -> CorpusResult:
    """Predict every record of ``source`` (a path, ``-`` for stdin, or any iterable of raw
    lines passed as ``lines``) into ``output`` (JSON Lines, appended to; see the module doc)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "ray" and (lines is not None or source == STDIN):
        raise ConfigError("--engine ray reads a file (not stdin or a stream)")
    config = config or CorpusConfig()
    output = Path(output)
    state = _claim(source, output, fmt, factory, overwrite)
    if isinstance(factory, PredictorSpec):
        factory = predictor_factory(factory)
    problems = _Problems("<stdin>" if source == STDIN else source)
    skipped = [0]
    if engine == "ray":
        from cdlm.inference.ray_engine import run_ray

        chunks = run_ray(source, fmt, factory, state, problems, workers=workers, config=config)
    else:
        records = read_records(source, fmt, lines=lines)
        chunks = _run_here(
            records, factory, state, problems, skipped, config=config, workers=workers,
            threads=threads,
        )  # fmt: skip
    size = None
    if lines is None and source != STDIN and Path(source).is_file():
        size = Path(source).stat().st_size
    result = CorpusResult(str(output), 0, 0, state.records, state.torn_bytes, 0.0)
    _write_all(chunks, output, f"predict {Path(source).name}", size, progress, result)
    result.skipped += skipped[0]
    result.errors = problems.count
    return result


def _claim(
    source: str,
    output: Path,
    fmt: Format,
    factory: PredictorFactory | PredictorSpec,
    overwrite: bool,
) -> ResumeState:
    """Check and claim the output for this run (:func:`cdlm.data.resume.open_output`) and say
    on stderr what a resume found."""
    check_not_input(source, output)
    header = RunHeader(input=input_key(source), input_format=fmt, options=_options(factory))
    state = open_output(output, header, overwrite=overwrite)
    if state.torn_bytes:
        print(
            f"{output}: cut off a torn last line ({state.torn_bytes} bytes); it is written again",
            file=sys.stderr,
        )
    if state.records:
        print(f"{output}: resuming; {state.records} records are done", file=sys.stderr)
    return state


def _write_all(
    chunks: Iterable[tuple[list[bytes], int, int]],
    output: Path,
    title: str,
    size: int | None,
    progress: bool,
    result: CorpusResult,
) -> None:
    """Append each chunk's lines to ``output`` as it comes (the model loads on the first),
    with a progress bar over the input bytes; counts go into ``result``."""
    start = time.perf_counter()
    with _progress(progress, size) as bar, open(output, "ab") as out:
        task = bar.add_task(title, total=size, records=0, rate="")
        for lines_out, position, skipped_here in chunks:
            out.write(b"".join(lines_out))
            out.flush()
            if not result.written and lines_out:
                result.first_write_s = time.perf_counter() - start
                result.first_batch = len(lines_out)
            result.written += len(lines_out)
            result.skipped += skipped_here
            rate = result.written / max(time.perf_counter() - start, 1e-9)
            bar.update(task, completed=position, records=result.written, rate=f"{rate:.1f}/s")
    result.seconds = time.perf_counter() - start


def _options(factory: PredictorFactory | PredictorSpec) -> dict[str, Any]:
    """What the run header records of the model side: the spec, less what changes no output
    record (batch sizes, the corpus and serve sections); a bare factory (tests, library
    callers) by its name."""
    if isinstance(factory, PredictorSpec):
        options = factory.model_dump(mode="json", exclude={"batch_size"})
        config = options.get("config") or {}
        for name, field in CdlmConfig.model_fields.items():
            if not getattr(field.annotation, "shapes_output", True):
                config.pop(name, None)  # how the run goes, not what it writes
        return options
    return {"factory": getattr(factory, "__qualname__", type(factory).__name__)}


def _run_here(
    records: Iterator[tuple[int, int, Record]],
    factory: PredictorFactory,
    state: ResumeState,
    problems: _Problems,
    skipped: list[int],
    *,
    config: CorpusConfig,
    workers: int,
    threads: int | None,
) -> Iterator[tuple[list[bytes], int, int]]:
    """The local engine: ``(output lines, input bytes done, 0)`` per batch, in input order."""
    name = problems.name
    batches = _batches(records, state, config.batch_size, config.max_text_chars, name, skipped)
    sent: deque[_Batch] = deque()

    def tracked() -> Iterator[list[Record]]:
        for b in batches:
            sent.append(b)
            yield b.todo()

    for predicted in run_local(
        tracked(), factory, workers=workers, threads=threads, prefetch=config.prefetch
    ):
        batch = sent.popleft()
        for i, problem in sorted(batch.problems.items()):
            problems.report(batch.lines[i], problem)
        yield batch.merge(predicted), batch.position, 0
