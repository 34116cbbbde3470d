"""Entities: the one span type over words, the one IOB2 span decoder, and the one output entity.

``bio_spans`` is the only place tags become spans (model decoding, BIO data, prediction, the
reasoning candidates, the probe and FactMix all read spans through it), so every part of cdlm
agrees on what an entity is, and that is what seqeval's strict IOB2 mode scores:

- a span starts at ``B-X`` and continues over the ``I-X`` that follow it;
- a stray ``I-X`` (at the start, after ``O``, or after a span of another type) starts nothing and
  is not an entity: strict mode drops it, where lenient readers would start a span there.

:class:`Entity` is a span of the *input text* (character offsets) with its label, score and
source; its JSON form ``{start, end, text, label, score, source}`` is cdlm's output record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

OUTSIDE = "O"


def tag_type(tag: str) -> str | None:
    """The entity type of one BIO tag (``B-X``/``I-X`` -> ``X``); ``None`` for ``O``."""
    return None if tag == OUTSIDE else tag[2:]


def label_types(labels: Iterable[str]) -> list[str]:
    """The distinct entity types of BIO ``labels``, in order of first appearance."""
    return list(dict.fromkeys(tag[2:] for tag in labels if tag != OUTSIDE))


class Span(NamedTuple):
    """An entity over words ``[start, end)`` (a tuple, so ``start, end, label = span`` works)."""

    start: int
    end: int
    label: str


def bio_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of IOB2 ``tags`` in strict mode: a stray ``I-X`` is no entity."""
    out: list[Span] = []
    label, start = None, 0
    for i, tag in enumerate([*tags, OUTSIDE]):
        if label is not None and tag == f"I-{label}":
            continue
        if label is not None:
            out.append(Span(start, i, label))
            label = None
        if tag.startswith("B-"):
            label, start = tag[2:], i
    return out


def span_tags(n: int, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """``n`` IOB2 tags with ``spans`` written as ``B-X I-X ...`` (the inverse of bio_spans)."""
    tags = [OUTSIDE] * n
    for start, end, label in spans:
        tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    return tags


@dataclass
class Entity:
    """One output entity; ``text == input[start:end]`` (character offsets)."""

    start: int
    end: int
    text: str
    label: str
    score: float
    source: Literal["tagger", "llm"]
    word_start: int
    word_end: int
    explanation: dict[str, Any] | None = None

    def to_json(self, explain: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "label": self.label,
            "score": round(self.score, 4),
            "source": self.source,
        }
        if explain and self.explanation is not None:
            out["explanation"] = self.explanation
        return out
