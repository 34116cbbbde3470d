"""Which reader or writer a dataset file needs, from its extension: BIO or span JSONL.

Both become the same :class:`~cdlm.data.bio.Sentence` list (word-level IOB2), so training,
evaluation and ``cdlm data check`` do not care which one the user gave.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cdlm.data.bio import BioFile, Sentence, read_bio_file, write_bio
from cdlm.errors import DataError

Format = Literal["bio", "jsonl"]
FORMATS: tuple[Format, ...] = ("bio", "jsonl")
SUFFIXES: dict[str, Format] = {".txt": "bio", ".bio": "bio", ".conll": "bio", ".jsonl": "jsonl"}


def file_format(path: Path | str) -> Format | None:
    """``bio`` or ``jsonl`` from the extension (``None`` for any other)."""
    return SUFFIXES.get(Path(path).suffix.lower())


def _known(path: Path | str) -> Format:
    fmt = file_format(path)
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension; expected "
            f"{', '.join(s for s in SUFFIXES if SUFFIXES[s] == 'bio')} (BIO) or .jsonl "
            "(span JSON Lines)"
        )
    return fmt


def read_sentences(path: Path | str, *, repair: bool = False, fmt: Format | None = None) -> BioFile:
    """Sentences of a BIO or span JSONL file (``fmt`` default: from the extension).
    ``repair`` (I- that starts an entity -> B-) exists for BIO only."""
    fmt = fmt or _known(path)
    if fmt == "bio":
        return read_bio_file(path, repair=repair)
    if repair:
        raise DataError(f"{path}: --repair applies to BIO files only (JSONL has no I- tags)")
    from cdlm.data.jsonl import read_jsonl

    return BioFile(read_jsonl(path))


def write_sentences(
    path: Path | str, sentences: Sequence[Sentence], *, fmt: Format | None = None
) -> None:
    """Write sentences as BIO or span JSONL (``fmt`` default: from the extension), atomically."""
    fmt = fmt or _known(path)
    if fmt == "bio":
        write_bio(path, sentences)
        return
    from cdlm.data.jsonl import record_from_sentence, write_jsonl

    write_jsonl(path, [record_from_sentence(s) for s in sentences])
