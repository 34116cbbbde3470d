"""BIO (IOB2) files: ``token<TAB>tag`` or ``token<SPACE>tag`` per line, blank line between
sentences.

The reader is strict on purpose: a malformed line stops the read with one
``DataError("{path}:{line}: <what is wrong>")`` instead of being skipped, because a silently
dropped or re-tagged token changes every F1 computed downstream. Choices:

- A line with a tab is split on tabs (CrossNER); otherwise on runs of spaces (CoNLL style).
  The token is the first column, the tag the last; columns in between (POS, chunk) are ignored.
- ``-DOCSTART-`` lines are document separators, not tokens: they end the current sentence.
- Tags must be ``O``, ``B-<type>`` or ``I-<type>`` (IOB2). An ``I-X`` that starts an entity
  (sentence start, after ``O`` or after another type) is an error unless ``repair=True``, which
  turns it into ``B-X`` and counts it (``BioFile.repaired``) so the caller can report how many.
- A UTF-8 byte-order mark and CRLF line endings are accepted; any other non-UTF-8 byte is an
  error naming its line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cdlm.data.spans import OUTSIDE, label_types
from cdlm.errors import DataError
from cdlm.results import atomic_write_text

DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """One tokenised sentence with IOB2 tags (``tags`` may be all ``O`` for unlabelled text)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    # Where it came from, for error messages: file path and 1-based line of its first token.
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BioFile:
    """The result of reading one file: its sentences and the lines whose tag was repaired."""

    sentences: list[Sentence]
    # 1-based line numbers where ``repair=True`` turned an entity-starting ``I-X`` into ``B-X``.
    repaired: tuple[int, ...] = ()


def _check_tag(tag: str, where: str) -> str:
    """Return the entity type of ``tag`` ("" for ``O``), or raise naming the bad tag."""
    if tag == OUTSIDE:
        return ""
    prefix, sep, etype = tag.partition("-")
    if not sep or prefix not in ("B", "I"):
        raise DataError(f"{where}: unknown tag {tag!r}: expected O, B-<type> or I-<type> (IOB2)")
    if not etype:
        raise DataError(f"{where}: tag {tag!r} has no entity type after {prefix}-")
    return etype


def parse_bio_lines(
    lines: Iterable[str], source: str = "<string>", *, repair: bool = False, first_line: int = 1
) -> BioFile:
    """Parse BIO lines (without or with trailing newlines) into sentences.

    ``source`` only names the input in error messages (``"{source}:{line}: ..."``).
    """
    sentences: list[Sentence] = []
    repaired: list[int] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    prev_type = ""  # entity type of the previous tag in this sentence ("" = O / sentence start)

    def flush() -> None:
        nonlocal tokens, tags, prev_type
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(tags), source=source, line=start))
        tokens, tags, prev_type = [], [], ""

    for number, raw in enumerate(lines, start=first_line):
        line = raw.rstrip("\r\n").rstrip(" \t")  # trailing separators are no empty column
        if not line.strip(" \t"):
            flush()
            continue
        # Split on ASCII separators only: str.split() would also split inside a token on
        # no-break or other Unicode spaces and silently drop the rest as an "extra column".
        cols = line.split("\t") if "\t" in line else [c for c in line.split(" ") if c]
        if cols[0] == DOCSTART:
            flush()
            continue
        where = f"{source}:{number}"
        if len(cols) < 2:
            raise DataError(
                f"{where}: expected 2 or more columns (token<TAB>tag or token<SPACE>tag), "
                f"found 1: {line.strip()[:60]!r}"
            )
        token, tag = cols[0], cols[-1].strip(" ")
        if not token.strip(" "):
            raise DataError(f"{where}: empty token before tag {tag!r}")
        etype = _check_tag(tag, where)
        if tag.startswith("I-") and etype != prev_type:
            after = f"after {tags[-1]!r}" if tags else "at the start of a sentence"
            if not repair:
                raise DataError(
                    f"{where}: {tag!r} {after} is not valid IOB2 (an entity must start with "
                    f"B-{etype}); fix the file or pass --repair to turn it into B-{etype}"
                )
            tag = f"B-{etype}"
            repaired.append(number)
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
        prev_type = etype
    flush()
    return BioFile(sentences, tuple(repaired))


def decode_utf8(path: Path, data: bytes) -> str:
    """The text of a file's bytes (a UTF-8 BOM is dropped); bad UTF-8 names its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
            "convert the file to UTF-8"
        ) from None


def _raise_if_json_lines(path: Path, lines: list[str]) -> None:
    """A span JSONL file read as BIO fails with a baffling ``unknown tag '"person"}]}'``; say
    what the file is instead."""
    import json

    number, first = next(((n, ln) for n, ln in enumerate(lines, 1) if ln.strip()), (0, ""))
    if not first.lstrip().startswith("{"):
        return
    try:
        json.loads(first)
    except ValueError:
        return
    except RecursionError:
        pass  # JSON nested too deeply to parse: JSON all the same
    raise DataError(
        f"{path}:{number}: this looks like JSON Lines, not BIO (token<TAB>tag lines); name it "
        f"{path.stem}.jsonl to read it as span JSONL, or convert it with `cdlm data convert`"
    )


def read_lines(path: Path, kind: str) -> list[str]:
    """The lines of a UTF-8 dataset file (``kind`` names what was expected in errors)."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected {kind}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    # split("\n"), not splitlines(): the latter also breaks on U+2028, U+0085 and friends,
    # which can occur inside tokens and would shift every reported line number.
    return decode_utf8(path, data).split("\n")


def read_bio_file(path: Path | str, *, repair: bool = False) -> BioFile:
    """Read and validate one BIO file; see the module docstring for the rules."""
    path = Path(path)
    lines = read_lines(path, "a BIO file")
    try:
        result = parse_bio_lines(lines, str(path), repair=repair)
    except DataError:
        _raise_if_json_lines(path, lines)
        raise
    if not result.sentences:
        raise DataError(f"{path}:1: empty file: no sentences (expected token<TAB>tag lines)")
    return result


def read_bio(path: Path | str, *, repair: bool = False) -> list[Sentence]:
    """Sentences of one BIO file (strict IOB2; ``repair=True`` turns a starting I- into B-)."""
    return read_bio_file(path, repair=repair).sentences


def format_bio(sentences: Iterable[Sentence], sep: str = "\t") -> str:
    """The text of a BIO file: one ``token<sep>tag`` line per token, a blank line after each
    sentence (the CrossNER layout, so the reader reads it back to equal sentences)."""
    out: list[str] = []
    for sent in sentences:
        if len(sent.tokens) != len(sent.tags):
            raise DataError(
                f"{sent.source or '<sentence>'}:{sent.line}: {len(sent.tokens)} tokens but "
                f"{len(sent.tags)} tags"
            )
        for token, tag in zip(sent.tokens, sent.tags, strict=True):
            if (
                not token.strip(" ")
                or any(c in token for c in "\t\r\n")
                or (sep == " " and " " in token)
            ):
                raise DataError(
                    f"{sent.source or '<sentence>'}:{sent.line}: token {token!r} cannot be "
                    "written to a BIO file (empty or contains a separator)"
                )
            out.append(f"{token}{sep}{tag}\n")
        out.append("\n")
    return "".join(out)


def write_bio(path: Path | str, sentences: Iterable[Sentence], sep: str = "\t") -> None:
    """Write sentences as a UTF-8 BIO file, atomically (a temp file renamed into place), so a
    crash never leaves a half-written file that would later read as a shorter dataset."""
    atomic_write_text(path, format_bio(sentences, sep))


def entity_types(sentences: Iterable[Sentence]) -> list[str]:
    """Sorted entity types (tags without ``B-``/``I-``) occurring in the sentences."""
    return sorted(label_types(tag for sent in sentences for tag in sent.tags))


def bio_labels(types: Iterable[str]) -> list[str]:
    """BIO label list ``["O", "B-t1", "I-t1", "B-t2", ...]`` in the order of ``types``
    (duplicates dropped). Index 0 is always ``O``; the tagger uses this as its label list."""
    labels = [OUTSIDE]
    for etype in dict.fromkeys(types):
        labels += [f"B-{etype}", f"I-{etype}"]
    return labels
