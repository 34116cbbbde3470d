"""Run folders: where checkpoints go, what they are called, whether a finished one can be
reused, and claims on a folder that several processes may want at once.

- The runs folder is ``--runs-dir``, else ``$CDLM_RUNS_DIR``, else ``./runs``; a run trained by
  ``cdlm train`` goes to ``<runs>/<domain>__<variant>__seed<N>``.
- A run is *finished* when its ``scores.json`` exists (training writes it last) and its saved
  ``config.json`` holds the same training config (:func:`training_view`: the fields that shape
  the model); a suite keeps a run of another config apart in ``...__<config hash>``.
- What shapes a run is declared in :mod:`cdlm.config`, where each section and field is defined
  (its ``lifetime``, ``NOT_HASHED`` fields, ``in_use``), never listed here: a new runtime
  section or field cannot change a run hash, and committed ledgers keep their runs
  (``python evals/check_ledger_hashes.py`` checks every recorded hash).
- Models for everyone: the default model ships inside the package (:func:`shipped_dir`,
  ``cdlm/shipped/default``, packed weights); other named models are
  ``<cdlm home>/models/<name>`` (:func:`model_dir`; ``cdlm model build-default`` builds into
  ``models/default-build``), found from any working folder.
- Claims: ``<folder>.lock`` holds the owner's pid; a lock whose process is gone is stale (two
  suites sharing a runs folder never train the same run, nor the same cached source model).
  The lock appears with its pid in it (a hard link of a finished temporary file), so no reader
  ever finds it empty and takes it over; a stale one is removed under ``<folder>.lock.break``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cdlm.config import CdlmConfig, TrainConfig, cache_home, without_runtime
from cdlm.errors import ConfigError

RUNS_ENV = "CDLM_RUNS_DIR"
DEFAULT_MODEL = "default"  # the shipped model's name
BUILD_MODEL = "default-build"  # where `cdlm model build-default` builds it by default


def runs_dir(path: Path | str | None = None) -> Path:
    """Where checkpoints and the source cache go."""
    return Path(path or os.environ.get(RUNS_ENV) or "runs")


def model_dir(name: str = BUILD_MODEL) -> Path:
    """Where the named model lives in the user's cdlm home (``$CDLM_HOME`` or the user cache):
    ``<home>/models/<name>``; ``CDLM.from_pretrained(name)`` looks there."""
    return cache_home() / "models" / name


def shipped_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of a model shipped inside the cdlm package (``cdlm/shipped/<name>``)."""
    from importlib.resources import files

    return Path(str(files("cdlm") / "shipped" / name))


def target_of(config: CdlmConfig) -> str:
    """The config's target domain; a one-line error when none was given."""
    if not config.train.target:
        raise ConfigError("train.target: no target domain given (use --target politics)")
    return config.train.target


def run_name(config: CdlmConfig) -> str:
    """``<domain>__<variant>__seed<N>``: the folder name of a run in the runs folder."""
    from cdlm.data.registry import domain_name

    t = config.train
    return f"{domain_name(target_of(config))}__{t.variant}__seed{t.seed}"


def default_out_dir(config: CdlmConfig, runs: Path | str | None = None) -> Path:
    """Where ``cdlm train`` puts the run of ``config`` by default."""
    return runs_dir(runs) / run_name(config)


def training_view(config: CdlmConfig | dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that shape the trained model (for "same run?" comparisons): each
    section's :meth:`~cdlm.config.Section.run_view`, as its lifetime and markers declare.

    A saved config is re-validated first (without its runtime sections, which older
    checkpoints saved too), so fields added to the config since the run was saved compare at
    their defaults."""
    if isinstance(config, dict):
        config = CdlmConfig.model_validate(without_runtime(config))
    views = {name: getattr(config, name).run_view() for name in type(config).model_fields}
    return {name: view for name, view in views.items() if view is not None}


def config_hash(config: CdlmConfig) -> str:
    """Ten hex digits of :func:`training_view`: names a run's folder and its ledger record."""
    blob = json.dumps(training_view(config), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def saved_config(folder: Path) -> dict[str, Any] | None:
    """The training view of the config saved in a run folder (None when unreadable)."""
    try:
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return training_view(meta["config"])
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def _finished(folder: Path, wanted: dict[str, Any]) -> bool:
    return (folder / "scores.json").is_file() and saved_config(folder) == wanted


def run_folders(runs: Path | str, config: CdlmConfig) -> tuple[Path, Path]:
    """The run's default folder (the one ``cdlm train`` uses) and its config-hashed twin."""
    default = Path(runs) / run_name(config)
    return default, default.with_name(f"{default.name}__{config_hash(config)}")


def first_finished(folders: tuple[Path, ...], wanted: dict[str, Any]) -> Path | None:
    return next((f for f in folders if _finished(f, wanted)), None)


def finished_run(runs: Path | str, config: CdlmConfig) -> Path | None:
    """The folder of a finished run trained with exactly this config, if there is one."""
    return first_finished(run_folders(runs, config), training_view(config))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_with_pid(path: Path) -> bool:
    """Create ``path`` holding our pid, atomically: the pid goes into a temporary file of the
    same folder, which is then hard-linked to ``path`` (fails if it exists). No reader ever
    sees the file without its pid. False when ``path`` exists already."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: create, then write (readers give a
        return _create_then_write(path)  # lock without a pid its grace period)
    finally:
        os.unlink(tmp)
    return True


def _create_then_write(path: Path) -> bool:
    """The lock without a hard link: created empty, then given our pid (not atomic)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    return True


def _stale(path: Path, grace_s: float) -> bool:
    """Whether ``path`` exists and its claim is over: its pid is gone, or it holds no pid (an
    older cdlm, a damaged file) and is older than ``grace_s``. A missing or unreadable file is
    never stale: nothing is removed on a guess."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    if text.isdigit() and int(text) > 0:
        return not _pid_alive(int(text))
    return age >= grace_s


def _break_stale(lock: Path, grace_s: float) -> None:
    """Remove the stale ``lock`` while holding ``<lock>.break``, re-checked there: two processes
    that both found it stale never remove the fresh lock one of them has just taken."""
    breaker = lock.with_name(lock.name + ".break")
    if not _link_with_pid(breaker):
        if _stale(breaker, grace_s):
            breaker.unlink(missing_ok=True)  # its process died while breaking
        return
    try:
        if _stale(lock, grace_s):  # only a breaker holder removes a stale lock: still the same
            lock.unlink(missing_ok=True)
    finally:
        breaker.unlink(missing_ok=True)


def claim(folder: Path, grace_s: float | None = None) -> Path | None:
    """Claim a run folder for training (``<folder>.lock`` holding our pid); ``None`` when a live
    process holds it already (two suites sharing a runs folder never train the same run).
    ``grace_s`` (default ``train.lock_grace_s``): how long a lock without a pid counts as held."""
    grace = TrainConfig().lock_grace_s if grace_s is None else grace_s
    lock = folder.with_name(folder.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _link_with_pid(lock):
            return lock
        if _stale(lock, grace):
            _break_stale(lock, grace)
        elif lock.exists():
            return None  # held by a live process (or not readable: never taken on a guess)
    return None
