"""The one results writer and the one atomic write.

Every results file cdlm writes (``cdlm eval``, suites, probes, the alpha sweep, the LLM
evaluation, the benchmarks under ``evals/``) goes through :func:`write_results`: the JSON record
of truth (two-space indent, a trailing newline) and, when given, its Markdown rendering beside it
(same stem, ``.md``). A record must carry its ``provenance`` (command line, commit, time; see
:func:`cdlm.provenance.stamp`), so no figure can be written without saying where it came from.

Every file is written atomically (:func:`atomic_file`): a temporary file in the same folder,
renamed onto the target only when complete, so an interrupted run never leaves a half-written
file that would later read as a shorter dataset or a truncated result.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

# Where results files go by default (relative to the working directory: the repository's
# evals/results/ when run from the checkout).
RESULTS_DIR = Path("evals") / "results"


@contextmanager
def atomic_file(path: Path | str, *, binary: bool = False, suffix: str = ".tmp") -> Iterator[IO]:
    """An open temporary file beside ``path`` that replaces ``path`` when the block ends without
    an error (and is removed when it raises). Text mode is UTF-8 with ``\\n`` line ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        if binary:
            handle = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with handle:
            yield handle
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(text)


def write_json(path: Path | str, data: Any, indent: int | None = 2) -> None:
    """``data`` as JSON (indented unless ``indent`` is None) with a trailing newline,
    atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def write_results(
    path: Path | str, record: BaseModel | dict[str, Any], markdown: str | None = None
) -> Path:
    """Write ``record`` to ``path`` (JSON) and ``markdown`` to ``path`` with ``.md``; returns
    ``path``. The record must hold a ``provenance`` entry."""
    path = Path(path)
    data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    if not isinstance(data.get("provenance"), dict):
        raise ValueError(f"{path}: a results record needs its provenance (cdlm.provenance.stamp)")
    write_json(path, data)
    if markdown is not None:
        atomic_write_text(path.with_suffix(".md"), markdown)
    return path
