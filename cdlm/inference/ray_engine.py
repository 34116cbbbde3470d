"""``cdlm predict --engine ray``: the corpus run of :mod:`cdlm.inference.corpus` on Ray Data.

The pipeline is ``read (byte ranges of the file) -> map_batches(predictor actors) -> driver``:

- :class:`LinesSource` splits the file into byte ranges of ``corpus.ray_chunk_bytes``; each read
  task streams the lines that start in its range (:func:`cdlm.data.corpus.line_range`), in blocks
  of raw bytes (never the whole file). Reads run on the driver's node (the file need not be on
  shared storage); the actors run wherever the cluster has CPUs.
- On resume the driver first reads the input up to the end of the records the output already
  holds, checking each against its output record (:func:`done_offset`); the read tasks start
  after them.
- :class:`RayPredictor` actors (``workers`` of them, one CPU and one torch thread each) load the
  model once, parse their lines, predict and return encoded output lines; a record the model
  cannot take is answered alone with an ``error`` field.
- The driver receives the blocks in input order (Ray Data's ``preserve_order``), numbers the
  lines (so a bad line is reported as ``FILE:LINE``) and appends to the output.

``ray.init(address=corpus.ray_address)`` joins an existing cluster (``"auto"`` or
``ray://host:port``); without an address it joins ``$RAY_ADDRESS`` or starts a local Ray. A Ray
already initialised by the caller (e.g. a test) is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from cdlm.config import CorpusConfig
from cdlm.data.corpus import (
    Format,
    LineError,
    byte_ranges,
    error_record,
    line_range,
    parse_line,
    read_records,
    record_problem,
)
from cdlm.data.resume import ResumeState
from cdlm.errors import ConfigError, DataError
from cdlm.inference.predictors import PredictorFactory, encode, set_threads


def _lines_source_class():  # -> type: ray.data.Datasource subclass, defined once Ray is imported
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class LinesSource(Datasource):
        """The raw lines of one file, read in byte ranges; column ``raw`` (bytes) and ``end``
        (the byte offset after the line, for progress)."""

        def __init__(self, path: str, chunk_bytes: int, block_lines: int, first: int) -> None:
            super().__init__()
            self.path = path
            self.first = first  # byte offset of the first line to read (after the done ones)
            self.size = os.path.getsize(path)
            self.chunk_bytes = chunk_bytes
            self.block_lines = block_lines

        def estimate_inmemory_data_size(self) -> int:
            return self.size - self.first

        @property
        def supports_distributed_reads(self) -> bool:
            return False  # the file is on the driver's node

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None):
            path, block_lines = self.path, self.block_lines

            def read(start: int, end: int) -> Iterator[Any]:
                raws: list[bytes] = []
                ends: list[int] = []
                for position, raw in line_range(path, start, end):
                    raws.append(raw)
                    ends.append(position)
                    if len(raws) >= block_lines:
                        yield pa.table({"raw": pa.array(raws, pa.binary()), "end": ends})
                        raws, ends = [], []
                if raws:
                    yield pa.table({"raw": pa.array(raws, pa.binary()), "end": ends})

            tasks = []
            for start, end in byte_ranges(self.size - self.first, self.chunk_bytes):
                start, end = start + self.first, end + self.first
                meta = BlockMetadata(
                    num_rows=None, size_bytes=end - start, exec_stats=None, input_files=(path,)
                )
                tasks.append(ReadTask(lambda s=start, e=end: read(s, e), meta))
            return tasks

    return LinesSource


class RayPredictor:
    """A Ray Data actor: parses raw lines, predicts, encodes."""

    def __init__(
        self, factory: PredictorFactory, fmt: Format, max_chars: int, threads: int = 1
    ) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        set_threads(threads)
        self.predict = factory()
        self.fmt = fmt
        self.max_chars = max_chars

    def __call__(self, batch: Any) -> dict[str, list[Any]]:  # batch: pyarrow.Table
        raws = batch.column("raw").to_pylist()
        n = len(raws)
        out: list[bytes] = [b""] * n
        error = [""] * n  # a bad line: the run stops there
        problem = [""] * n  # a record the model cannot take: answered with an error field
        todo: list[int] = []
        records = []
        for i, raw in enumerate(raws):
            try:
                record = parse_line(raw, self.fmt)
            except LineError as exc:
                error[i] = str(exc)
                continue
            if record is None:
                continue
            why = record_problem(record, self.max_chars)
            if why is not None:
                problem[i] = why
                out[i] = encode([error_record(record, why)])[0]
                continue
            todo.append(i)
            records.append(record)
        if records:
            for i, line in zip(todo, encode(self.predict(records)), strict=True):
                out[i] = line
        return {
            "out": out,
            "error": error,
            "problem": problem,
            "end": batch.column("end").to_pylist(),
        }


def done_offset(path: str, fmt: Format, state: ResumeState) -> tuple[int, int]:
    """``(lines, bytes)`` of the input up to the end of the records the output holds, each
    checked against its output record; the read tasks start there."""
    done = 0
    if not state.records:
        return 0, 0
    for number, position, record in read_records(path, fmt):
        state.check(record, f"{path}:{number}")
        done += 1
        if done == state.records:
            return number, position
    raise DataError(
        f"{path}: holds {done} records, fewer than the {state.records} the output holds already "
        "(the input changed since the run started); pass --overwrite to start again"
    )


def connect(address: str | None) -> None:
    """Join the Ray cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local one;
    a Ray this process already initialised is kept."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs Ray Data: pip install 'cdlm[ray]' (or 'ray[data]')"
        ) from None
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def run_ray(
    path: str,
    fmt: Format,
    factory: PredictorFactory,
    state: ResumeState,
    problems: Any,
    *,
    workers: int,
    config: CorpusConfig,
) -> Iterator[tuple[list[bytes], int, int]]:
    """``(encoded output lines, input bytes done, records skipped)`` per block, in input order;
    ``problems.report(line, why)`` names each record answered with an error."""
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    line, first = done_offset(path, fmt, state)
    if state.records:
        yield [], first, state.records
    connect(config.ray_address)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the output is in input order
    ctx.enable_progress_bars = False  # cdlm shows its own
    source = _lines_source_class()(path, config.ray_chunk_bytes, config.batch_size, first)
    # Reading is light I/O: no CPU reserved, so `workers` one-CPU actors fill a `workers`-CPU
    # Ray without starving the reads.
    ds = ray.data.read_datasource(source, num_cpus=0).map_batches(
        RayPredictor,
        fn_constructor_kwargs={
            "factory": factory,
            "fmt": fmt,
            "max_chars": config.max_text_chars,
            "threads": 1,
        },
        batch_size=config.batch_size,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=1,
    )
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        lines: list[bytes] = []
        end = 0
        columns = [block.column(c).to_pylist() for c in ("out", "error", "problem")]
        for out, error, problem in zip(*columns, strict=True):
            line += 1
            if error:
                raise DataError(f"{path}:{line}: {error}")
            if problem:
                problems.report(line, problem)
            if out:
                lines.append(out)
        if len(block):
            end = block.column("end")[-1].as_py()
        yield lines, end, 0
