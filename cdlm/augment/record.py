"""What a generated sentence is and where it came from (one sidecar JSONL line each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from cdlm.data.bio import Sentence

Kind = Literal["entity", "context"]


class Replacement(BaseModel):
    """One replaced stretch: tokens ``[start, end)`` of the origin became ``new`` at ``start``."""

    start: int  # token index in the origin sentence (equal in the new one: edits go left to right)
    end: int  # exclusive, in the origin sentence
    old: str  # the replaced tokens joined by spaces
    new: str  # the inserted tokens joined by spaces
    label: str  # entity type for entity-level swaps, "O" for context words


@dataclass(frozen=True)
class Generated:
    """A semi-fact: the new sentence, the index of its origin in the input list, and the edits."""

    sentence: Sentence
    origin: int
    kind: Kind
    replacements: tuple[Replacement, ...]

    def sidecar(self, index: int) -> dict:
        """The sidecar JSONL record; ``index`` is the sentence's 0-based position in the output."""
        return {
            "index": index,
            "origin": self.origin,
            "kind": self.kind,
            "replaced": [r.model_dump() for r in self.replacements],
            "text": " ".join(self.sentence.tokens),
        }
