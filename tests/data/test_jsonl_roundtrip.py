"""``cdlm data convert`` BIO -> span JSONL -> BIO on every real CrossNER file (five domains and
CoNLL-2003, all splits) gives back the same sentences, and the same file bytes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cdlm.cli import data as data_cli
from cdlm.data.bio import format_bio, read_bio
from cdlm.data.jsonl import read_jsonl_records
from cdlm.data.registry import DOMAINS, SPLITS


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:  # keeps "data" a sub-command, as in the real app
        pass

    data_cli.register(app)
    return app


def _convert(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, ["data", "convert", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("domain", DOMAINS)
def test_round_trip_is_identical(
    app: typer.Typer, domain: str, crossner_dir: Path, tmp_path: Path
) -> None:
    for split in SPLITS:
        original = crossner_dir / domain / f"{split}.txt"
        jsonl = tmp_path / f"{split}.jsonl"
        back = tmp_path / f"{split}.back.bio"
        sentences = read_bio(original)
        out = _convert(app, str(original), str(jsonl))
        assert f"wrote {jsonl}: {len(sentences)} sentences" in out
        assert "text = tokens joined by single spaces" in out
        _convert(app, str(jsonl), str(back))
        assert read_bio(back) == sentences, f"{domain}/{split}"
        # Byte for byte too. CoNLL-2003 marks document breaks with a second blank line and
        # lacks the final one; a sentence list keeps neither, so compare those without them.
        text, written = original.read_text(encoding="utf-8"), back.read_text(encoding="utf-8")
        assert written == format_bio(sentences)
        if domain == "conll2003":
            text = re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n\n"
        assert written == text, f"{domain}/{split}"
        # The JSONL itself is what it says: text = tokens joined by spaces, offsets into it.
        records = read_jsonl_records(jsonl)
        for record, sent in zip(records[:50], sentences, strict=False):
            assert record.text == " ".join(sent.tokens)
            assert all(record.text[t.start : t.end] == t.text for t in record.tokens)


def test_direction_flags(app: typer.Typer, tmp_path: Path) -> None:
    bio = tmp_path / "in.conll"
    bio.write_text("Paris\tB-location\nis\tO\n\n", encoding="utf-8")
    out = tmp_path / "out.data"
    _convert(app, str(bio), str(out), "--to", "jsonl")
    assert out.read_text(encoding="utf-8").startswith('{"text": "Paris is", "spans": [{"start": 0')
    back = tmp_path / "back"  # no extension: the format opposite to the input's
    _convert(app, str(out), str(back), "--to", "bio")
    assert back.read_text(encoding="utf-8") == "Paris\tB-location\nis\tO\n\n"
    runner = CliRunner()
    same = runner.invoke(app, ["data", "convert", str(bio), str(tmp_path / "x.txt")])
    assert same.exit_code != 0 and "both bio: nothing to convert" in str(same.exception)
    unknown = runner.invoke(app, ["data", "convert", str(out), str(tmp_path / "y.txt")])
    assert "cannot tell BIO (.txt/.bio/.conll) from JSONL" in str(unknown.exception)
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "y.txt").exists()
