"""The BIO reader/writer on real CrossNER files and on every malformed case, line numbers exact."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdlm.data.bio import (
    Sentence,
    bio_labels,
    entity_types,
    parse_bio_lines,
    read_bio,
    read_bio_file,
    write_bio,
)
from cdlm.data.spans import bio_spans
from cdlm.errors import DataError

POLITICS_TYPES = [
    "country",
    "election",
    "event",
    "location",
    "misc",
    "organisation",
    "person",
    "politicalparty",
    "politician",
]


def _write(tmp_path: Path, text: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, repair: bool = False) -> str:
    with pytest.raises(DataError) as info:
        read_bio(path, repair=repair)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- real data ---------------------------------------------------------------------------------


def test_politics_counts_and_labels(crossner_dir: Path) -> None:
    train = read_bio(crossner_dir / "politics" / "train.txt")
    test = read_bio(crossner_dir / "politics" / "test.txt")
    # Split sizes of the CrossNER paper (Table 1): politics 200 / 541 / 651 sentences.
    assert len(train) == 200
    assert len(test) == 651
    assert sum(len(s.tokens) for s in train) == 8384
    assert sum(len(bio_spans(s.tags)) for s in train) == 1304
    assert entity_types(train) == POLITICS_TYPES
    first = train[0]
    assert first.tokens[:5] == ("Parties", "with", "mainly", "Eurosceptic", "views")
    assert first.tags[:5] == ("O",) * 5
    assert first.line == 1 and first.source.endswith("train.txt")
    assert train[1].line == len(first.tokens) + 2  # one blank line between sentences
    assert all(len(s.tokens) == len(s.tags) for s in train)


def test_labels_order() -> None:
    assert bio_labels(["b", "a", "b"]) == ["O", "B-b", "I-b", "B-a", "I-a"]
    assert bio_labels(POLITICS_TYPES)[:3] == ["O", "B-country", "I-country"]
    assert len(bio_labels(POLITICS_TYPES)) == 19


def test_spans() -> None:
    tags = ["B-a", "I-a", "O", "B-b", "B-b", "I-b", "I-b"]
    assert bio_spans(tags) == [(0, 2, "a"), (3, 4, "b"), (4, 7, "b")]
    assert bio_spans(["O", "O"]) == []


# --- formats -----------------------------------------------------------------------------------


def test_space_separated_extra_columns_docstart_crlf_bom(tmp_path: Path) -> None:
    text = (
        "\ufeff-DOCSTART- -X- -X- O\r\n\r\n"
        "EU NNP B-NP B-ORG\r\n"
        "rejects VBZ B-VP O\r\n"
        "\r\n\r\n"
        "Peter\tNNP\tB-PER\r\n"
        "Blackburn\tNNP\tI-PER\r\n"
    )
    path = _write(tmp_path, text)
    sents = read_bio(path)
    assert sents == [
        Sentence(("EU", "rejects"), ("B-ORG", "O")),
        Sentence(("Peter", "Blackburn"), ("B-PER", "I-PER")),
    ]
    assert [s.line for s in sents] == [3, 7]
    assert entity_types(sents) == ["ORG", "PER"]


def test_tokens_keep_unicode_spaces_and_line_numbers(tmp_path: Path) -> None:
    result = parse_bio_lines(["New York\tB-loc", "x\tO\t"])
    assert result.sentences[0].tokens == ("New York", "x")
    # U+2028 inside a token neither splits the line nor shifts later line numbers;
    # a no-break space inside a space-separated token is part of the token.
    path = _write(tmp_path, "a\u2028b\tO\n\nc\u00a0d O\ne\tI-x\n")
    sents = read_bio_file(path, repair=True)
    assert [s.tokens for s in sents.sentences] == [("a\u2028b",), ("c\u00a0d", "e")]
    assert sents.repaired == (4,)


def test_write_read_round_trip(tmp_path: Path, crossner_dir: Path) -> None:
    original = read_bio(crossner_dir / "ai" / "train.txt")
    out = tmp_path / "sub" / "copy.txt"
    write_bio(out, original)
    assert read_bio(out) == original
    # The writer reproduces the CrossNER layout byte for byte.
    assert out.read_bytes() == (crossner_dir / "ai" / "train.txt").read_bytes()
    write_bio(tmp_path / "space.txt", original[:5], sep=" ")
    assert read_bio(tmp_path / "space.txt") == original[:5]
    assert not list(tmp_path.glob("sub/.*tmp"))  # no temp file left behind


def test_writer_refuses_unwritable_token(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be written"):
        write_bio(tmp_path / "x.txt", [Sentence(("a\tb",), ("O",))])
    assert not (tmp_path / "x.txt").exists()


# --- malformed input: one line, file:line ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("a\tO\nb\tO\n\nlonely\n", 4, "found 1"),  # wrong column count
        ("a\tO\nb\tE-PER\n", 2, "unknown tag 'E-PER'"),  # unknown prefix
        ("a\tO\nb\tPER\n", 2, "unknown tag 'PER'"),  # no prefix at all
        ("a\tB-\n", 1, "no entity type"),
        ("a\tO\n\nb\tO\nc\tI-PER\n", 4, "'I-PER' after 'O'"),  # I- after O
        ("a\tB-LOC\nb\tI-PER\n", 2, "'I-PER' after 'B-LOC'"),  # I- after another type
        ("a\tO\n\nb\tI-PER\n", 3, "at the start of a sentence"),
        ("a\tO\n\tO\n", 2, "empty token"),
    ],
)
def test_malformed_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert what in message


def test_empty_file(tmp_path: Path) -> None:
    for text in ("", "\n\n  \n", "-DOCSTART- O\n\n"):
        path = _write(tmp_path, text)
        assert _error(path).startswith(f"{path}:1: empty file")


def test_bad_encoding_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "a\tO\nb\tO\n\nM\xfcller\tB-PER\n".encode("latin-1"))
    message = _error(path)
    assert message.startswith(f"{path}:4: not valid UTF-8"), message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.txt") == f"{tmp_path / 'nope.txt'}: file not found"
    assert "is a folder" in _error(tmp_path)


def test_repair_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, "a\tI-PER\nb\tI-PER\nc\tO\nd\tI-LOC\ne\tB-PER\nf\tI-LOC\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:1:")):
        read_bio(path)
    result = read_bio_file(path, repair=True)
    assert result.repaired == (1, 4, 6)
    assert result.sentences[0].tags == ("B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-LOC")
    # Repair fixes only IOB2 starts; an unknown prefix is still an error.
    bad = _write(tmp_path, "a\tS-PER\n", "bad.txt")
    assert _error(bad, repair=True).startswith(f"{bad}:1: unknown tag")
