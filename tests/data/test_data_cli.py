"""``cdlm data check`` and ``cdlm data stats``: counts on real files; a malformed file gives one
``error: file:line: ...`` line and exit 2 through the real console entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdlm.cli import data as data_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # a callback keeps "data" a sub-command, as in the real app
        pass

    data_cli.register(app)
    return app


def test_check_counts(app: typer.Typer, crossner_dir: Path) -> None:
    path = crossner_dir / "politics" / "train.txt"
    result = CliRunner().invoke(app, ["data", "check", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"{path}: OK, 200 sentences, 8384 tokens, 1304 entities of 9 types" in result.output
    assert "politicalparty" in result.output and "195" in result.output


def test_check_repair_writes_fixed_file(app: typer.Typer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Angela\tI-person\nMerkel\tI-person\nspoke\tO\n", encoding="utf-8")
    fixed = tmp_path / "fixed.txt"
    result = CliRunner().invoke(
        app, ["data", "check", str(bad), "--repair", "--out", str(fixed)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "repaired 1 I- tags to B- (lines 1)" in result.output
    assert fixed.read_text(encoding="utf-8") == "Angela\tB-person\nMerkel\tI-person\nspoke\tO\n\n"


def test_check_malformed_exits_2_with_one_line(tmp_path: Path, cdlm_cli) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("a\tO\nb\tO\n\nc\tO\nd\tI-person\n", encoding="utf-8")
    proc = cdlm_cli("data", "check", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}:5: 'I-person' after 'O' is not valid IOB2 (an entity must start with "
        "B-person); fix the file or pass --repair to turn it into B-person"
    ]
    missing = cdlm_cli("data", "check", str(tmp_path / "missing.txt"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'missing.txt'}: file not found"


def test_stats(app: typer.Typer, crossner_dir: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "stats", "ai", "--data-dir", str(crossner_dir)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert rows["train"].split("│")[2].strip() == "100"
    assert rows["test"].split("│")[2].strip() == "431"
    assert "programlang" in rows
