"""``cdlm predict --engine ray``: the corpus run of :mod:`cdlm.inference.corpus` on Ray Data.

The pipeline is ``read (byte ranges of the file) -> map_batches(predictor actors) -> driver``:

- :class:`LinesSource` splits the file into byte ranges of ``corpus.ray_chunk_bytes``; each read
  task streams the lines that start in its range (:func:`cdlm.data.corpus.line_range`), in blocks
  of raw bytes (never the whole file). Reads run on the driver's node (the file need not be on
  shared storage); the actors run wherever the cluster has CPUs.
- :class:`RayPredictor` actors (``workers`` of them, one CPU and one torch thread each) load the
  model once, parse their lines, skip records whose ``id`` is already in the output, predict the
  rest and return encoded output lines.
- The driver receives the blocks in input order (Ray Data's ``preserve_order``), numbers the
  lines (so a bad line is reported as ``FILE:LINE``), drops the records without an ``id`` that a
  previous run already wrote, and appends to the output.

``ray.init(address=corpus.ray_address)`` joins an existing cluster (``"auto"`` or
``ray://host:port``); without an address it joins ``$RAY_ADDRESS`` or starts a local Ray. A Ray
already initialised by the caller (e.g. a test) is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from cdlm.config import CorpusConfig
from cdlm.data.corpus import Format, LineError, byte_ranges, line_range, parse_line
from cdlm.data.resume import ResumeState, id_key
from cdlm.errors import ConfigError, DataError
from cdlm.inference.predictors import PredictorFactory, encode, set_threads


def _lines_source_class():  # -> type: ray.data.Datasource subclass, defined once Ray is imported
    import pyarrow as pa
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class LinesSource(Datasource):
        """The raw lines of one file, read in byte ranges; column ``raw`` (bytes) and ``end``
        (the byte offset after the line, for progress)."""

        def __init__(self, path: str, chunk_bytes: int, block_lines: int) -> None:
            super().__init__()
            self.path = path
            self.size = os.path.getsize(path)
            self.chunk_bytes = chunk_bytes
            self.block_lines = block_lines

        def estimate_inmemory_data_size(self) -> int:
            return self.size

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
            for start, end in byte_ranges(self.size, self.chunk_bytes):
                meta = BlockMetadata(
                    num_rows=None, size_bytes=end - start, exec_stats=None, input_files=(path,)
                )
                tasks.append(ReadTask(lambda s=start, e=end: read(s, e), meta))
            return tasks

    return LinesSource


class RayPredictor:
    """A Ray Data actor: parses raw lines, skips done ids, predicts, encodes."""

    def __init__(
        self, factory: PredictorFactory, fmt: Format, done: frozenset[str], threads: int = 1
    ) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        set_threads(threads)
        self.predict = factory()
        self.fmt = fmt
        self.done = done

    def __call__(self, batch: Any) -> dict[str, list[Any]]:  # batch: pyarrow.Table
        raws = batch.column("raw").to_pylist()
        n = len(raws)
        out: list[bytes] = [b""] * n
        error = [""] * n
        anonymous = [False] * n
        skipped = [False] * n
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
            if "id" in record:
                if id_key(record["id"]) in self.done:
                    skipped[i] = True
                    continue
            else:
                anonymous[i] = True
            todo.append(i)
            records.append(record)
        if records:
            for i, line in zip(todo, encode(self.predict(records)), strict=True):
                out[i] = line
        return {
            "out": out,
            "error": error,
            "anonymous": anonymous,
            "skipped": skipped,
            "end": batch.column("end").to_pylist(),
        }


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
    *,
    workers: int,
    config: CorpusConfig,
) -> Iterator[tuple[list[bytes], int, int]]:
    """``(encoded output lines, input bytes done, records skipped)`` per block, in input order."""
    if workers < 1:
        raise ConfigError(f"--workers: expected at least 1, got {workers}")
    connect(config.ray_address)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the output is in input order
    ctx.enable_progress_bars = False  # cdlm shows its own
    source = _lines_source_class()(path, config.ray_chunk_bytes, config.batch_size)
    # Reading is light I/O: no CPU reserved, so `workers` one-CPU actors fill a `workers`-CPU
    # Ray without starving the reads.
    ds = ray.data.read_datasource(source, num_cpus=0).map_batches(
        RayPredictor,
        fn_constructor_kwargs={
            "factory": factory,
            "fmt": fmt,
            "done": frozenset(state.ids),
            "threads": 1,
        },
        batch_size=config.batch_size,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=1,
    )
    line = 0
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        lines: list[bytes] = []
        skipped = 0
        end = 0
        columns = [block.column(c).to_pylist() for c in ("out", "error", "anonymous", "skipped")]
        for out, error, anonymous, was_skipped in zip(*columns, strict=True):
            line += 1
            if error:
                raise DataError(f"{path}:{line}: {error}")
            if was_skipped or (anonymous and state.skip_anonymous()):
                skipped += 1
            elif out:
                lines.append(out)
        if len(block):
            end = block.column("end")[-1].as_py()
        yield lines, end, skipped
