"""Span JSON Lines: one JSON object per line with the raw text and entity character offsets.

This is what spaCy, Prodigy, doccano and our own ``cdlm predict`` use, so a user's labelled
data can be trained on and evaluated without converting to BIO first. Accepted per record:

- ``text``: the string (required; it must hold at least one token).
- The entities, under exactly one of these keys (an empty list means "no entities"):

  - ``spans``: ``[{"start": 0, "end": 6, "label": "person"}, ...]`` (spaCy / Prodigy; what
    :func:`write_jsonl` writes),
  - ``entities``: the same dicts (``cdlm predict`` output) or ``[[0, 6, "person"], ...]``
    (spaCy v2 training tuples),
  - ``label``: doccano's sequence-labelling export ``[[0, 6, "person"], ...]``.

  Dicts may also use doccano's ``start_offset``/``end_offset``; other keys in a span dict
  (``score``, ``source``, ``token_start``...) are ignored, except ``text``, which must equal
  ``text[start:end]``.
- ``tokens`` (optional, Prodigy style): ``[{"text": "Angela", "start": 0, "end": 6}, ...]``.
  When present they are the tokenisation; otherwise :func:`cdlm.data.text.tokenize` (the one
  ``cdlm predict`` uses) cuts the text. Given tokens must be exact slices of the text, in order,
  and cover every non-space character.
- Any other field (``id``, ``meta``...) is kept in :attr:`SpanRecord.extra` and written back.

Label Studio's JSON export (annotations nested per task) is not JSON Lines; export its "JSON-MIN"
or CoNLL format, or map it to ``spans`` first.

Strict like the BIO reader: the first bad record stops the read with one
``DataError("{path}:{line}: ...")``: invalid JSON, a missing or wrongly typed field,
spans that overlap, offsets outside the text or ``start >= end``, a span that cuts a token (it
is reported, never moved to the nearest boundary), and an empty label or one that carries a BIO
prefix (``B-person``). Blank lines are skipped.

Word-level BIO (what the tagger trains on) is derived from the character spans: a span covers
the tokens from the one starting at ``start`` to the one ending at ``end``.

BIO -> JSONL (:func:`record_from_sentence`) joins the tokens with single spaces to make the
text and writes the tokens too, so JSONL -> BIO gives back exactly the same tokens (the
tokenizer alone would re-split about 15% of CrossNER sentences differently: ``--``, ``J.``,
``3.``, ``'m``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cdlm.data.bio import Sentence, read_lines
from cdlm.data.spans import OUTSIDE, bio_spans, span_tags
from cdlm.data.text import Token, tokenize
from cdlm.errors import DataError
from cdlm.results import atomic_write_text

SPAN_KEYS = ("spans", "entities", "label")  # where the entities may be, in this order
# A label that already carries an IOB/IOBES/BILOU prefix (or a bare leading "-") would give
# tags like "B-B-person": the type alone is wanted.
_TAG_PREFIX = re.compile(r"^(?:[BIESLU]-|-)")

CharSpan = tuple[int, int, str]  # (start, end_exclusive, label) in characters


@dataclass(frozen=True)
class SpanRecord:
    """One validated record: text, its tokens, entity spans on token boundaries, other fields."""

    text: str
    tokens: tuple[Token, ...]
    spans: tuple[CharSpan, ...]  # sorted by start, non-overlapping
    extra: dict[str, Any] = field(default_factory=dict)
    # Where it came from, for error messages: file path and 1-based line.
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    def to_sentence(self) -> Sentence:
        """The record as a BIO sentence (the spans were checked to lie on token boundaries)."""
        starts = {tok.start: i for i, tok in enumerate(self.tokens)}
        ends = {tok.end: i + 1 for i, tok in enumerate(self.tokens)}
        words = [(starts[start], ends[end], label) for start, end, label in self.spans]
        tags = span_tags(len(self.tokens), words)
        tokens = tuple(tok.text for tok in self.tokens)
        return Sentence(tokens, tuple(tags), source=self.source, line=self.line)

    def to_json(self) -> dict[str, Any]:
        """The record as written by :func:`write_jsonl` (``spans`` with their text, then the
        other fields, then the tokens)."""
        spans = [
            {"start": s, "end": e, "label": label, "text": self.text[s:e]}
            for s, e, label in self.spans
        ]
        tokens = [{"text": t.text, "start": t.start, "end": t.end} for t in self.tokens]
        return {"text": self.text, "spans": spans, **self.extra, "tokens": tokens}


def record_from_sentence(sentence: Sentence) -> SpanRecord:
    """A BIO sentence as a span record: text = tokens joined by single spaces."""
    tokens: list[Token] = []
    pos = 0
    for word in sentence.tokens:
        tokens.append(Token(word, pos, pos + len(word)))
        pos += len(word) + 1
    text = " ".join(sentence.tokens)
    spans = tuple(
        (tokens[first].start, tokens[last - 1].end, etype)
        for first, last, etype in bio_spans(sentence.tags)
    )
    return SpanRecord(text, tuple(tokens), spans, source=sentence.source, line=sentence.line)


# --- validation -----------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{where}: {what} must be an integer, got {_type_name(value)} {value!r}")
    return value


def _span_fields(item: Any, key: str, k: int, where: str) -> tuple[Any, Any, Any, Any]:
    """(start, end, label, text or None) of one span, in either accepted shape."""
    what = f"{key}[{k}]"
    if isinstance(item, list):
        if len(item) != 3:
            raise DataError(f"{where}: {what} must be [start, end, label], got {item!r}")
        return (*item, None)
    if not isinstance(item, dict):
        raise DataError(
            f"{where}: {what} must be an object {{start, end, label}} or [start, end, label], "
            f"got {_type_name(item)}"
        )
    fields = []
    for name, alias in (("start", "start_offset"), ("end", "end_offset"), ("label", None)):
        value = item.get(name, item.get(alias) if alias else None)
        if value is None:
            raise DataError(f"{where}: {what} has no {name!r}")
        fields.append(value)
    return (*fields, item.get("text"))


def _check_label(label: Any, what: str, where: str) -> str:
    if not isinstance(label, str):
        raise DataError(f"{where}: {what} label must be a string, got {_type_name(label)}")
    if not label.strip():
        raise DataError(f"{where}: {what} has an empty label")
    if label == OUTSIDE:
        raise DataError(f"{where}: {what} label 'O' means no entity; leave the span out")
    if _TAG_PREFIX.match(label):
        raise DataError(
            f"{where}: {what} label {label!r} looks like a BIO tag; give the entity type alone "
            f"(e.g. {_TAG_PREFIX.sub('', label) or 'person'!r})"
        )
    if any(c.isspace() for c in label):
        raise DataError(f"{where}: {what} label {label!r} contains whitespace")
    return label


def _spans(record: dict[str, Any], text: str, where: str) -> tuple[str, list[CharSpan]]:
    """(key used, spans sorted by start) with offsets, labels and overlaps checked."""
    keys = [k for k in SPAN_KEYS if k in record]
    if not keys:
        raise DataError(
            f"{where}: no entities field: expected one of {', '.join(map(repr, SPAN_KEYS))} "
            "(an empty list for none)"
        )
    if len(keys) > 1:
        raise DataError(f"{where}: both {keys[0]!r} and {keys[1]!r} given; keep one")
    key = keys[0]
    items = record[key]
    if not isinstance(items, list):
        raise DataError(f"{where}: field {key!r} must be a list of spans, got {_type_name(items)}")
    spans: list[CharSpan] = []
    for k, item in enumerate(items):
        start, end, label, span_text = _span_fields(item, key, k, where)
        what = f"{key}[{k}]"
        start, end = _int(start, f"{what} start", where), _int(end, f"{what} end", where)
        label = _check_label(label, what, where)
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"{where}: {what} [{start}, {end}) is outside the text (length {len(text)}) "
                "or empty (start must be < end)"
            )
        if span_text is not None and span_text != text[start:end]:
            raise DataError(
                f"{where}: {what} text {span_text!r} differs from text[{start}:{end}] "
                f"= {text[start:end]!r}"
            )
        spans.append((start, end, label))
    spans.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            raise DataError(
                f"{where}: spans overlap: [{s1}, {e1}) {l1} {text[s1:e1]!r} and "
                f"[{s2}, {e2}) {l2} {text[s2:e2]!r} (BIO cannot hold nested or overlapping "
                "entities)"
            )
    return key, spans


def _token_problem(item: Any, text: str, pos: int) -> str | None:
    """What is wrong with one given token (``None``: nothing); ``pos`` = end of the previous."""
    if not isinstance(item, dict):
        return "must be an object {text, start, end}"
    word, start, end = item.get("text"), item.get("start"), item.get("end")
    if not isinstance(word, str) or any(type(x) is not int for x in (start, end)):
        return "needs a string 'text' and integer 'start' and 'end'"
    if not 0 <= start < end <= len(text):
        return f"[{start}, {end}) is outside the text (length {len(text)}) or empty"
    if text[start:end] != word:
        return f"text {word!r} differs from text[{start}:{end}] = {text[start:end]!r}"
    if start < pos:
        return f"{word!r} at {start} overlaps the previous token or is out of order"
    if text[pos:start].strip():
        return f"{word!r} at {start} leaves {text[pos:start].strip()!r} uncovered by any token"
    return None


def _given_tokens(items: Any, text: str, where: str) -> list[Token]:
    """A record's own ``tokens``: exact slices of the text, in order, covering every
    non-space character."""
    if not isinstance(items, list):
        raise DataError(f"{where}: field 'tokens' must be a list, got {_type_name(items)}")
    tokens: list[Token] = []
    pos = 0
    for k, item in enumerate(items):
        # The common, valid case in one cheap test; the slow path says what is wrong.
        try:
            word, start, end = item["text"], item["start"], item["end"]
            ok = (
                type(start) is int
                and type(end) is int
                and pos <= start < end <= len(text)
                and text[start:end] == word
                and (start == pos or text[pos:start].isspace())
            )
        except (TypeError, KeyError):
            ok = False
        if not ok:
            raise DataError(f"{where}: tokens[{k}] {_token_problem(item, text, pos)}")
        tokens.append(Token(word, start, end))
        pos = end
    if text[pos:].strip():
        raise DataError(f"{where}: tokens do not cover the end of the text {text[pos:]!r}")
    return tokens


def _check_boundaries(
    spans: Sequence[CharSpan], tokens: Sequence[Token], text: str, where: str
) -> None:
    """Every span starts where a token starts and ends where a token ends (never moved)."""
    starts = {t.start for t in tokens}
    ends = {t.end for t in tokens}
    for start, end, label in spans:
        for offset, ok, side in ((start, start in starts, "start"), (end, end in ends, "end")):
            if ok:
                continue
            cut = next((t for t in tokens if t.start < offset < t.end), None)
            if cut is not None:
                why = f"cuts the token {cut.text!r} [{cut.start}, {cut.end})"
            else:
                why = f"{side}s with whitespace"
            raise DataError(
                f"{where}: span [{start}, {end}) {label} {text[start:end]!r} {why}; "
                "fix its offsets or give the record its own 'tokens' (spans are never moved)"
            )


def parse_record(record: Any, where: str, source: str = "", line: int = 0) -> SpanRecord:
    """Validate one decoded JSON value (see the module docstring); ``where`` prefixes errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {_type_name(record)}")
    text = record.get("text")
    if "text" not in record:
        raise DataError(f"{where}: missing field 'text'")
    if not isinstance(text, str):
        raise DataError(f"{where}: field 'text' must be a string, got {_type_name(text)}")
    key, spans = _spans(record, text, where)
    given = record.get("tokens")
    tokens = tokenize(text) if given is None else _given_tokens(given, text, where)
    if not tokens:
        raise DataError(f"{where}: text has no tokens (empty or whitespace only)")
    _check_boundaries(spans, tokens, text, where)
    extra = {k: v for k, v in record.items() if k not in ("text", "tokens", key)}
    return SpanRecord(text, tuple(tokens), tuple(spans), extra, source=source, line=line)


def parse_jsonl_lines(
    lines: Iterable[str], source: str = "<string>", first_line: int = 1
) -> list[SpanRecord]:
    """Validate JSON Lines (blank lines skipped); ``source`` names the input in errors."""
    records = []
    for number, raw in enumerate(lines, start=first_line):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:  # json.loads recurses per nesting level: [[[[...]]]] exhausts it
            raise DataError(f"{where}: JSON nested too deeply") from None
        records.append(parse_record(value, where, source, number))
    return records


def read_jsonl_records(path: Path | str) -> list[SpanRecord]:
    """Read and validate a span JSONL file; see the module docstring for the rules."""
    path = Path(path)
    records = parse_jsonl_lines(read_lines(path, "a JSON Lines file"), str(path))
    if not records:
        raise DataError(f"{path}:1: empty file: no records (expected one JSON object per line)")
    return records


def read_jsonl(path: Path | str) -> list[Sentence]:
    """Sentences (word-level IOB2) of a span JSONL file."""
    return [record.to_sentence() for record in read_jsonl_records(path)]


def format_jsonl(records: Iterable[SpanRecord]) -> str:
    """The text of a JSONL file: one compact UTF-8 JSON object per line."""
    return "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: Path | str, records: Iterable[SpanRecord]) -> None:
    """Write records as span JSONL, atomically (all validated before the file appears)."""
    atomic_write_text(path, format_jsonl(records))
