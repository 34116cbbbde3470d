"""Word-shape (casing) features.

The embedded encoder (all-MiniLM-L6-v2) is uncased: it sees ``apple`` for both ``apple`` and
``Apple``, yet capitalisation is the strongest surface cue for names. Each word gets one shape
class; a learned embedding of it is *added* to the word vector, so the word features keep the
encoder's width (the fusion and causal modules see the same ``d``) and a linear head still gets
a per-shape bias for every tag. Switch off with ``encoder.casing_features = false``.
"""

from __future__ import annotations

import functools
import unicodedata

import torch
from torch import nn

# Shape classes; index 0 is padding. Checked in this order (first match wins).
SHAPES: tuple[str, ...] = (
    "<pad>",
    "all-digit",  # 1999
    "has-digit",  # 3.5  B52  1,000
    "punct",  # , . ( " --
    "single-cap",  # A
    "all-caps",  # NATO  U.S.
    "init-cap",  # Merkel  Baden-Württemberg
    "mixed-case",  # iPhone  McDonald
    "lower",  # parliament
    "other",  # symbols, CJK, emoji: no case
)
_INDEX = {name: i for i, name in enumerate(SHAPES)}


@functools.lru_cache(maxsize=1 << 16)  # words repeat; a corpus run asks again and again
def word_shape(word: str) -> int:
    """The shape class index of one word (never 0, which is padding)."""
    if word.isdigit():
        return _INDEX["all-digit"]
    if any(ch.isdigit() for ch in word):
        return _INDEX["has-digit"]
    if all(unicodedata.category(ch).startswith("P") for ch in word):
        return _INDEX["punct"]
    letters = [ch for ch in word if ch.isalpha()]
    if not letters or not any(ch.isupper() or ch.islower() for ch in letters):
        return _INDEX["other"]
    if all(ch.isupper() for ch in letters):
        return _INDEX["single-cap" if len(letters) == 1 else "all-caps"]
    if letters[0].isupper():
        # Every hyphen/apostrophe-separated part is Title or lower: Baden-Württemberg, O'Brien.
        parts = "".join(ch if ch.isalpha() else " " for ch in word).split()
        simple = all(part.istitle() or part.islower() for part in parts)
        return _INDEX["init-cap" if simple else "mixed-case"]
    return _INDEX["lower"] if all(ch.islower() for ch in letters) else _INDEX["mixed-case"]


class CasingFeatures(nn.Module):
    """A learned vector per shape class, added to the word features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(len(SHAPES), dim, padding_idx=0)
        # Small start so the pre-trained encoder's features dominate at first.
        nn.init.normal_(self.embedding.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, shape_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(shape_ids)
