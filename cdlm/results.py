"""The one results writer and the one atomic write.

Every results file cdlm writes (``cdlm eval``, suites, probes, the alpha sweep, the LLM
evaluation, the benchmarks under ``evals/``) goes through :func:`write_results`: the JSON record
of truth (two-space indent, a trailing newline) and, when given, its Markdown rendering beside it
(same stem, ``.md``). A record must carry its ``provenance`` (command line, commit, time; see
:func:`cdlm.provenance.stamp`), so no figure can be written without saying where it came from.

Results name paths portably (:func:`portable`): a checkpoint in the runs folder is written as
``$CDLM_RUNS_DIR/<run>``, a path under the working folder relative to it, and cdlm's user
folder, the installed packages and the temp folder by name, so a committed results file never
carries one machine's absolute paths.

Every file is written atomically (:func:`atomic_file`): a temporary file in the same folder,
renamed onto the target only when complete, so an interrupted run never leaves a half-written
file that would later read as a shorter dataset or a truncated result.
"""

from __future__ import annotations

import json
import os
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

RUNS_ENV = "CDLM_RUNS_DIR"

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


def portable(value: Any) -> Any:
    """``value`` (a string, or JSON data holding strings) with this machine's absolute paths
    made portable: the runs folder (``$CDLM_RUNS_DIR`` when it is an absolute path) becomes
    ``$CDLM_RUNS_DIR``, the working folder's prefix is dropped, and cdlm's user folder, the
    installed packages and the temp folder become ``<cdlm home>``, ``<site-packages>`` and
    ``<tmp>``."""
    return _portable(value, _machine_roots())


def _portable(value: Any, roots: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _portable(v, roots) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_portable(v, roots) for v in value]
    if not isinstance(value, str):
        return value
    for root, name in roots:
        value = value.replace(root + "/", f"{name}/" if name else "")
        value = (name or ".") if value == root else value
    return value


def _machine_roots() -> list[tuple[str, str]]:
    """(absolute folder, portable name; "" = drop the prefix), most specific first."""
    from cdlm.config import cache_home

    roots = []
    runs = os.environ.get(RUNS_ENV, "")
    if os.path.isabs(runs):
        roots += [(runs, f"${RUNS_ENV}"), (str(Path(runs).resolve()), f"${RUNS_ENV}")]
    roots += [(os.getcwd(), ""), (str(cache_home()), "<cdlm home>")]
    roots += [(sysconfig.get_paths()[k], "<site-packages>") for k in ("purelib", "platlib")]
    roots += [(tempfile.gettempdir(), "<tmp>")]
    return [(root.rstrip("/"), name) for root, name in roots if root.rstrip("/")]


def write_results(
    path: Path | str, record: BaseModel | dict[str, Any], markdown: str | None = None
) -> Path:
    """Write ``record`` to ``path`` (JSON) and ``markdown`` to ``path`` with ``.md``; returns
    ``path``. The record must hold a ``provenance`` entry."""
    path = Path(path)
    data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    if not isinstance(data.get("provenance"), dict):
        raise ValueError(f"{path}: a results record needs its provenance (cdlm.provenance.stamp)")
    write_json(path, portable(data))
    if markdown is not None:
        atomic_write_text(path.with_suffix(".md"), portable(markdown))
    return path
