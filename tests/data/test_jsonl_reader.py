"""Span JSON Lines (cdlm/data/jsonl.py): the accepted shapes give the same word-level IOB2, the
tokenizer of ``cdlm predict`` cuts raw text, given tokens are kept, other fields survive, and a
split folder may hold .jsonl instead of .txt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.data.bio import Sentence, read_bio, write_bio
from cdlm.data.jsonl import (
    format_jsonl,
    parse_jsonl_lines,
    read_jsonl,
    read_jsonl_records,
    record_from_sentence,
)
from cdlm.data.registry import domain_labels, load_split, present_splits
from cdlm.data.text import tokenize
from cdlm.errors import DataError

TEXT = "Angela Merkel met Emmanuel Macron in Paris."
TOKENS = ("Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", ".")
TAGS = ("B-politician", "I-politician", "O", "B-politician", "I-politician", "O", "B-location", "O")
SPANS = [(0, 13, "politician"), (18, 33, "politician"), (37, 42, "location")]


def _lines(*records: object) -> list[str]:
    return [json.dumps(r) for r in records]


@pytest.mark.parametrize(
    "record",
    [
        {"text": TEXT, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in SPANS]},
        {"text": TEXT, "label": [[s, e, lab] for s, e, lab in SPANS]},  # doccano
        {"text": TEXT, "entities": [[s, e, lab] for s, e, lab in SPANS]},  # spaCy v2 tuples
        {  # cdlm predict output, spans in any order
            "text": TEXT,
            "entities": [
                {"start": s, "end": e, "text": TEXT[s:e], "label": lab, "score": 0.9}
                for s, e, lab in reversed(SPANS)
            ],
        },
        {  # doccano with relations
            "text": TEXT,
            "entities": [
                {"id": k, "start_offset": s, "end_offset": e, "label": lab}
                for k, (s, e, lab) in enumerate(SPANS)
            ],
        },
    ],
    ids=["spans", "doccano-label", "spacy-tuples", "predict-output", "doccano-offsets"],
)
def test_accepted_shapes_give_the_same_bio(record: dict) -> None:
    (rec,) = parse_jsonl_lines(_lines(record), "f.jsonl")
    assert rec.to_sentence() == Sentence(TOKENS, TAGS)
    assert rec.spans == tuple(SPANS)


def test_raw_text_is_cut_by_the_predict_tokenizer() -> None:
    text = "The U.S. Senate met in Baden-Württemberg on 12:30."
    (rec,) = parse_jsonl_lines(_lines({"text": text, "spans": [[4, 8, "country"]]}), "f.jsonl")
    assert [t.text for t in rec.tokens] == [t.text for t in tokenize(text)]
    sent = rec.to_sentence()
    assert sent.tokens[1:3] == ("U.S.", "Senate") and sent.tags[1:3] == ("B-country", "O")
    assert (sent.source, sent.line) == ("f.jsonl", 1)


def test_given_tokens_win_over_the_tokenizer() -> None:
    # The tokenizer splits "J." into "J" "."; the record's own tokens keep it whole.
    text = "J. Smith won"
    tokens = [{"text": "J.", "start": 0, "end": 2}, {"text": "Smith", "start": 3, "end": 8}]
    tokens.append({"text": "won", "start": 9, "end": 12, "id": 2})  # extra keys are fine
    record = {"text": text, "spans": [[0, 8, "person"]], "tokens": tokens}
    (rec,) = parse_jsonl_lines(_lines(record), "f.jsonl")
    assert rec.to_sentence().tokens == ("J.", "Smith", "won")
    assert rec.to_sentence().tags == ("B-person", "I-person", "O")


def test_other_fields_are_kept_and_written_back() -> None:
    record = {"id": "doc-7", "text": TEXT, "label": [[37, 42, "location"]], "meta": {"a": 1}}
    (rec,) = parse_jsonl_lines(_lines(record), "f.jsonl")
    assert rec.extra == {"id": "doc-7", "meta": {"a": 1}}
    out = json.loads(format_jsonl([rec]))
    assert out["id"] == "doc-7" and out["meta"] == {"a": 1}
    assert out["spans"] == [{"start": 37, "end": 42, "label": "location", "text": "Paris"}]
    assert "label" not in out  # the spans are written under one key


def test_blank_lines_are_skipped_and_lines_counted() -> None:
    lines = ["", _lines({"text": "a", "spans": []})[0], "  ", '{"text": 1}']
    with pytest.raises(DataError, match=r"^f\.jsonl:4: field 'text' must be a string"):
        parse_jsonl_lines(lines, "f.jsonl")


def test_bio_to_record_joins_tokens_with_single_spaces() -> None:
    rec = record_from_sentence(Sentence(TOKENS, TAGS))
    assert rec.text == "Angela Merkel met Emmanuel Macron in Paris ."
    assert [rec.text[s:e] for s, e, _ in rec.spans] == ["Angela Merkel", "Emmanuel Macron", "Paris"]
    (back,) = parse_jsonl_lines([format_jsonl([rec])], "f.jsonl")
    assert back.to_sentence() == Sentence(TOKENS, TAGS)


def test_bio_reader_names_a_json_lines_file(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_text(
        '\n{"text": "Merkel", "spans": [{"start": 0, "end": 6, "label": "politician"}]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        read_bio(path)
    assert str(info.value) == (
        f"{path}:2: this looks like JSON Lines, not BIO (token<TAB>tag lines); name it "
        "train.jsonl to read it as span JSONL, or convert it with `cdlm data convert`"
    )


def test_file_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl:1: empty file: no records"):
        read_jsonl(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "ok", "spans": []}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_jsonl(bad)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"text": "ok", "spans": []}\r\n')
    assert read_jsonl(bom) == [Sentence(("ok",), ("O",))]


def test_folder_of_jsonl_splits(small_crossner: Path, tmp_path: Path) -> None:
    """A dataset folder with .jsonl splits reads as the same sentences and labels as its BIO
    twin; the label set comes from the spans."""
    from cdlm.data.jsonl import write_jsonl

    folder = tmp_path / "politics-jsonl"
    for split in ("train", "dev", "test"):
        sentences = load_split("politics", split, small_crossner)
        write_jsonl(folder / f"{split}.jsonl", [record_from_sentence(s) for s in sentences])
    assert present_splits(folder) == ["train", "dev", "test"]
    for split in ("train", "dev", "test"):
        assert load_split(str(folder), split) == load_split("politics", split, small_crossner)
    assert domain_labels(str(folder)) == domain_labels("politics", small_crossner)
    assert len(read_jsonl_records(folder / "dev.jsonl")) == len(
        load_split("politics", "dev", small_crossner)
    )


def test_split_in_both_formats_is_an_error(tmp_path: Path) -> None:
    write_bio(tmp_path / "train.txt", [Sentence(("a",), ("O",))])
    (tmp_path / "train.jsonl").write_text('{"text": "a", "spans": []}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_split(str(tmp_path), "train")
    assert str(info.value) == (
        f"{tmp_path / 'train.txt'} and {tmp_path / 'train.jsonl'}: split 'train' exists in "
        "both formats; remove or rename one"
    )
    with pytest.raises(DataError, match="both formats"):
        domain_labels(str(tmp_path))
