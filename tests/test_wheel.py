"""The package as a user gets it: build the wheel, install it into a fresh virtual environment
(not editable, no checkout on the path), and run cdlm from a folder outside the checkout.

The venv sees the already installed dependencies (``--system-site-packages``) and the wheel is
installed with ``--no-deps``, so nothing is downloaded. ``cdlm predict`` needs the default model
in the user cache; that part skips, with the reason, when it is not built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MERKEL = "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the cdlm wheel installed; its ``bin/`` and a clean environment."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy, so building leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "cdlm", src / "cdlm", ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"  # nothing may come from the network
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = _run([*pip, "-w", str(dist), str(src)], root, env)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("cdlm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cdlm/py.typed" in names and "cdlm/inference/model.py" in names
    assert not any(n.startswith(("tests/", "evals/")) for n in names)

    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], root, env)
    assert made.returncode == 0, made.stderr
    bin_dir = venv / "bin"
    installed = _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", str(wheel)], root, env
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return bin_dir, env


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working folder outside the checkout (nothing relative to it can be found)."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_wheel_installs_and_imports_from_the_venv(venv, elsewhere: Path) -> None:
    bin_dir, env = venv
    code = "import cdlm, sys; print(cdlm.__file__); print('torch' in sys.modules)"
    res = _run([str(bin_dir / "python"), "-c", code], elsewhere, env)
    assert res.returncode == 0, res.stderr
    where, torch_loaded = res.stdout.split()
    assert Path(where).is_relative_to(bin_dir.parent), where  # the wheel, not the checkout
    assert torch_loaded == "False"
    version = _run([str(bin_dir / "cdlm"), "--version"], elsewhere, env)
    assert version.returncode == 0 and version.stdout.startswith("cdlm "), version.stderr


def test_wheel_prompts_check(venv, elsewhere: Path) -> None:
    bin_dir, env = venv
    res = _run([str(bin_dir / "cdlm"), "prompts", "check"], elsewhere, env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ok: ")


def test_wheel_predict_with_the_default_model(venv, elsewhere: Path, default_model_dir) -> None:
    bin_dir, env = venv
    res = _run([str(bin_dir / "cdlm"), "predict", MERKEL], elsewhere, env)
    assert res.returncode == 0, res.stderr
    (record,) = [json.loads(line) for line in res.stdout.splitlines()]
    found = {e["text"]: e["label"] for e in record["entities"]}
    assert found.get("Angela Merkel") == "person" and found.get("Paris") == "location", found
    assert all(MERKEL[e["start"] : e["end"]] == e["text"] for e in record["entities"])
