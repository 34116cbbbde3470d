"""The house has floors (README "Layout", contracts in pyproject.toml): each floor imports only
the floors below it, nothing imports in a cycle, and ``import cdlm`` loads nothing heavy.

import-linter checks the import graph grimp builds from the source (imports inside functions and
under ``TYPE_CHECKING`` count too). The contract is itself checked: on a copy of the package with
one upward import, or with one cycle, it must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LINT = """
import sys
from pathlib import Path
import cdlm
assert Path(cdlm.__file__).resolve().is_relative_to(Path.cwd().resolve()), cdlm.__file__
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename="pyproject.toml", no_cache=True, no_logo=True))
"""


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package in ``root`` with the contracts of ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True
    )


def test_floors_are_kept_and_there_is_no_cycle() -> None:
    res = lint(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("house")
    shutil.copytree(REPO / "cdlm", root / "cdlm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "lines", "expected"),
    [
        (  # an upward import: ground must not know the CLI
            "config.py",
            "def _up() -> None:\n    from cdlm.cli import app  # noqa",
            ["cdlm.config is not allowed to import cdlm.cli"],
        ),
        (  # a cycle inside one floor: train imports evaluate already
            "experiments/evaluate.py",
            "def _back() -> None:\n    import cdlm.experiments.train",
            ["No cycles are allowed in cdlm.experiments", ".evaluate -> .train"],
        ),
    ],
)
def test_the_contracts_catch_a_violation(
    copy: Path, module: str, lines: str, expected: list[str]
) -> None:
    target = copy / "cdlm" / module
    original = target.read_text(encoding="utf-8")
    target.write_text(original + "\n\n" + lines + "\n", encoding="utf-8")
    try:
        res = lint(copy)
    finally:
        target.write_text(original, encoding="utf-8")
    assert res.returncode != 0
    for text in expected:
        assert text in res.stdout, res.stdout


@pytest.mark.parametrize("module", ["cdlm", "cdlm.cli"])
def test_importing_cdlm_loads_nothing_heavy(module: str) -> None:
    """``import cdlm`` (and the CLI's ``--help``) must not pay for torch, transformers or
    llama.cpp; they load inside the functions that need them."""
    code = (
        f"import sys, {module}; "
        "print(' '.join(m for m in ('torch', 'transformers', 'llama_cpp') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
