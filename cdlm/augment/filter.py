"""Denoising filter: keep a semi-fact only if the original-data tagger tags EVERY token right.

FactMix's check is stricter than looking at the replaced span alone: a swapped-in name can also
change how the tagger reads its neighbours, and a re-filled context word can turn an ``O`` into
an entity. A sentence containing an entity type the tagger does not know can never pass.
Tags are decoded the way the tagger decodes at inference (``tagger.decode``: valid-IOB2 Viterbi
by default), via :meth:`cdlm.model.tagger.Tagger.predict_tags`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cdlm.augment.progress import Track, no_track
from cdlm.augment.record import Generated
from cdlm.data.bio import Sentence


class TagPredictor(Protocol):
    """What the filter needs from :class:`cdlm.model.tagger.Tagger`."""

    def predict_tags(self, token_lists: list[list[str]]) -> list[list[str]]: ...


def predicted_tags(
    tagger: TagPredictor, sentences: Sequence[Sentence], batch: int = 64, track: Track = no_track
) -> list[list[str]]:
    """The tagger's tags for each sentence, in chunks (so a progress bar can advance)."""
    out: list[list[str]] = []
    for start in track(range(0, len(sentences), batch), "filter", -(-len(sentences) // batch)):
        out += tagger.predict_tags([list(s.tokens) for s in sentences[start : start + batch]])
    return out


def all_tokens_correct(
    sentences: Sequence[Sentence], predicted: Sequence[Sequence[str]]
) -> list[bool]:
    return [tuple(p) == s.tags for s, p in zip(sentences, predicted, strict=True)]


def denoise(
    generated: Sequence[Generated], tagger: TagPredictor, track: Track = no_track
) -> list[Generated]:
    """The semi-facts the tagger labels perfectly, in their original order."""
    sentences = [g.sentence for g in generated]
    keep = all_tokens_correct(sentences, predicted_tags(tagger, sentences, track=track))
    return [g for g, ok in zip(generated, keep, strict=True) if ok]
