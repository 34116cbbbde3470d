"""The built wheel works outside the checkout: prompts are package data, found from any working
directory, the type hints ship (py.typed), and the CLI tags text: with a checkpoint, and with the
default model the wheel carries (the user cache is an empty folder: nothing is built).

The virtual environment is fresh for cdlm (the wheel is installed into it, with no link to the
checkout) and borrows the heavy dependencies (torch, transformers...) from the running
interpreter's own site-packages through a ``.pth`` line, so the test needs no network and no
compiling, and works whether pytest runs in a virtual environment or not (a
``--system-site-packages`` venv made from inside a venv sees the base interpreter's packages,
not the venv's). A ``.pth`` line adds a folder without running the ``.pth`` files in it, so the
checkout's editable install stays out of sight.
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
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
MERKEL = "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``cwd`` without PYTHONPATH, so nothing can import the checkout's cdlm."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy, so the build writes nothing into the checkout
    shutil.copytree(REPO / "cdlm", src / "cdlm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = root / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    res = _run([*build, "--no-build-isolation"], root)
    if res.returncode != 0:  # no setuptools>=68 here: let pip fetch the build backend
        res = _run(build, root)
    assert res.returncode == 0, res.stderr
    (wheel,) = dist.glob("cdlm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cdlm/py.typed" in names and "cdlm/inference/model.py" in names
    shipped = "cdlm/shipped/default/"  # the default model's weights travel with the wheel
    for name in ("model.safetensors", "config.json", "recipe.json", "encoder/tokenizer.json"):
        assert shipped + name in names, name
    weights = zipfile.ZipFile(wheel).getinfo(shipped + "model.safetensors").file_size
    assert weights <= 50 * 1024 * 1024
    assert not any(n.startswith(("tests/", "evals/")) for n in names)
    env_dir = root / "venv"
    res = _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], root)
    assert res.returncode == 0, res.stderr
    lib = _run([str(env_dir / "bin" / "python"), "-c", PURELIB], root).stdout.strip()
    # Every site-packages folder this interpreter sees, in its order (a venv's own, and the
    # base's when the venv was made with --system-site-packages).
    borrowed = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (Path(lib) / "borrowed-deps.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install"]
    res = _run([*pip, "-q", "--no-deps", "--no-index", str(wheel)], root)
    assert res.returncode == 0, res.stderr
    return env_dir


def test_wheel_ships_the_prompts_and_finds_them_from_anywhere(venv: Path, tmp_path: Path) -> None:
    cdlm = str(venv / "bin" / "cdlm")
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import cdlm; print(cdlm.__file__)"], tmp_path
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    res = _run([cdlm, "prompts", "check"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"ok: {venv}") and "augment_fill" in res.stdout
    res = _run([cdlm, "prompts", "export", "mine"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "mine" / "labels" / "politics.toml").is_file()


def test_wheel_cli_predicts(venv: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    text = "Angela Merkel met Emmanuel Macron in Paris ."
    res = _run(
        [str(venv / "bin" / "cdlm"), "predict", "--checkpoint", str(tiny_checkpoint), text],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.splitlines()
    record = json.loads(line)
    assert record["text"] == text
    for ent in record["entities"]:
        assert text[ent["start"] : ent["end"]] == ent["text"] and ent["source"] == "tagger"


def test_wheel_imports_light_and_answers_version(venv: Path, tmp_path: Path) -> None:
    code = "import cdlm, sys; print('torch' in sys.modules)"
    res = _run([str(venv / "bin" / "python"), "-c", code], tmp_path)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stdout + res.stderr
    res = _run([str(venv / "bin" / "cdlm"), "predict", "--version"], tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("cdlm "), res.stderr


def test_wheel_predicts_with_the_default_model(
    venv: Path, tmp_path: Path, default_model_dir: Path
) -> None:
    """`cdlm predict "TEXT"` from a folder outside the checkout: no checkpoint given."""
    res = _run([str(venv / "bin" / "cdlm"), "predict", MERKEL], tmp_path)
    assert res.returncode == 0, res.stderr
    (record,) = [json.loads(line) for line in res.stdout.splitlines()]
    found = {e["text"]: e["label"] for e in record["entities"]}
    assert found.get("Angela Merkel") == "person" and found.get("Paris") == "location", found
    assert all(MERKEL[e["start"] : e["end"]] == e["text"] for e in record["entities"])
    assert record["routing"]["rule"] == "no LLM"
