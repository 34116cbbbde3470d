"""The command line as a whole: ``--version`` and ``-h`` on every command, choices in the help,
one name for the output option, one-line usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from cdlm import __version__
from cdlm.cli import _register, app, main


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # whole help lines, so the assertions see them


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def _commands() -> list[list[str]]:
    """Every command path: ``["predict"]``, ``["data", "check"]``, ..."""
    _register()
    paths = []

    def walk(command, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, [*prefix, name])
            paths.append([*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_command_has_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands()
    assert ["predict"] in commands and ["model", "build-default"] in commands
    assert len(commands) >= 15
    for path in [[], *commands]:
        code, out, err = _run(capsys, *path, "--version")
        assert (code, out, err) == (0, f"cdlm {__version__}\n", ""), path
        code, out, _ = _run(capsys, *path, "-h")
        assert code == 0 and "Usage: cdlm" in out, path


def test_choices_are_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    _, predict, _ = _run(capsys, "predict", "-h")
    for choices in ("<none|llama|gpt>", "<hard|all|none>", "<jsonl|conll>"):
        assert choices in predict
    _, evaluate, _ = _run(capsys, "eval", "-h")
    assert "<train|dev|test>" in evaluate
    _, evaluate_llm, _ = _run(capsys, "eval", "llm", "-h")  # the LLM has its own command now
    assert "<llama|gpt>" in evaluate_llm
    _, train, _ = _run(capsys, "train", "-h")
    assert "baseline|gcn|causal|full" in train and "<none|factmix>" in train


def test_bad_choice_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "predict", "--llm", "claude", "text")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: Invalid value for '--llm'")
    code, _, err = _run(capsys, "predict", "--route", "some", "text")
    assert code == 2 and err.startswith("error: Invalid value for '--route'")


# Commands that write, with the old names of their output option (hidden aliases now).
WRITERS = {
    "train": ["--out"],
    "eval": ["--results-dir"],
    "augment": ["--out"],
    "probe": [],
    "data download": ["--dest"],
    "data check": ["--out"],
    "graphs build": ["--out"],
    "graphs show": ["--out"],
    "model build-default": [],
    "model ship": [],
}


@pytest.mark.parametrize("path", WRITERS)
def test_one_name_for_the_output_option(path: str, capsys) -> None:
    _, out, _ = _run(capsys, *path.split(), "-h")
    assert "--output" in out and " -o " in out
    for old in WRITERS[path]:
        assert f"{old} " not in out  # hidden


def test_old_output_names_still_work(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.txt"
    src.write_text("Merkel\tI-person\nspoke\tO\n", encoding="utf-8")
    code, out, err = _run(
        capsys, "data", "check", str(src), "--repair", "--out", str(tmp_path / "a.txt")
    )
    assert code == 0, err
    assert (tmp_path / "a.txt").read_text(encoding="utf-8").startswith("Merkel\tB-person")
    code, _, err = _run(
        capsys, "data", "check", str(src), "--repair", "-o", str(tmp_path / "b.txt")
    )
    assert code == 0 and (tmp_path / "b.txt").is_file(), err
    code, _, err = _run(
        capsys,
        "data",
        "check",
        str(src),
        "-o",
        str(tmp_path / "c.txt"),
        "--out",
        str(tmp_path / "d.txt"),
    )
    assert code == 2 and err == "error: give --output or --out, not both\n"
