"""BIO (IOB2) files: ``token<TAB>tag`` or ``token<SPACE>tag`` per line, blank line between
sentences. (Reader/writer/validation to be completed by the data layer work.)"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sentence:
    """One tokenised sentence with IOB2 tags (``tags`` may be all ``O`` for unlabelled text)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    # Where it came from, for error messages: file path and 1-based line of its first token.
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)
