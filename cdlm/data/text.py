"""Raw text -> tokens with character offsets, split the way CrossNER/CoNLL files are.

CrossNER tokens keep hyphenated words (``Baden-Württemberg``), dotted abbreviations (``U.S.``) and
numbers with separators (``1,000``, ``3.5``) whole, split the possessive ``'s`` and every other
punctuation mark off as its own token. The tagger was trained on such tokens, so raw text is cut
the same way. Every token is an exact slice of the input, so entity offsets are too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Order matters: the first alternative that matches at a position wins.
_TOKEN = re.compile(
    r"""
    \d+(?:[.,:/]\d+)+            # numbers with separators: 1,000  3.5  12:30  1/2
    | (?:[^\W\d_]\.){2,}         # dotted abbreviations: U.S.  e.g.
    | ['’][sS](?!\w)             # possessive 's split off like CoNLL
    | \w+(?:-\w+|['’](?![sS](?!\w))\w+)*  # words with inner hyphens/apostrophes: O'Brien, long-time
    | \S                         # any other visible character is a token of its own
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One token and where it is: ``text == source[start:end]``."""

    text: str
    start: int
    end: int


# Unicode categories that carry no word: control, format, surrogate, unassigned or noncharacter,
# private use. A token made only of these (and whitespace) is never part of an entity.
JUNK_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Co"})


def is_junk(token: str) -> bool:
    """Whether ``token`` is made only of junk characters (:data:`JUNK_CATEGORIES`) or
    whitespace: a tagger row for it is noise (``\\x01`` came out as an entity)."""
    return bool(token) and all(
        c.isspace() or unicodedata.category(c) in JUNK_CATEGORIES for c in token
    )


def tokenize(text: str) -> list[Token]:
    """Split raw text into tokens with character offsets (whitespace is never part of a token)."""
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
