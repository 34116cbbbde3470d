"""What the LLM is asked about: the tagger's spans with their top-k types, plus likely missed
entities.

Word-level BIO probabilities ``probs[W, L]`` become span-level type probabilities: a span's
probability of type ``t`` is the mean over its words of ``p(B-t) + p(I-t)``, and of ``"none"`` the
mean of ``p(O)``; these sum to one. Choices:

- A tagger span's ``confidence`` is its probability of the tagger's own type; ``margin`` is that
  minus the best other option (types and "none"), so "small margin" means the tagger hesitated.
- A *likely missed* entity is a run of consecutive words the tagger left ``O`` with
  ``p(O) < missed_o_max``; its confidence is the mean ``p(O)`` (the tagger's confidence in "no
  entity"), so the same threshold routes both kinds.
- Every candidate offers ``"none"`` as well, so the LLM can reject a span as well as retype it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cdlm.data.spans import OUTSIDE, bio_spans, label_types, tag_type
from cdlm.model.decode import decode

NONE = "none"


@dataclass(frozen=True)
class Doc:
    """One sentence: its text, tokens and each token's character offsets in the text."""

    text: str
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]

    @classmethod
    def from_tokens(cls, tokens: list[str] | tuple[str, ...]) -> Doc:
        """A sentence from a BIO file: the text is the tokens joined by single spaces."""
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append((pos, pos + len(tok)))
            pos += len(tok) + 1
        return cls(" ".join(tokens), tuple(tokens), tuple(offsets))

    def char_span(self, start: int, end: int) -> tuple[int, int]:
        """Character offsets of the words ``start:end`` (end exclusive)."""
        return self.offsets[start][0], self.offsets[end - 1][1]

    def words_in(self, char_start: int, char_end: int) -> tuple[int, int] | None:
        """The words overlapping characters ``char_start:char_end`` (None if no word does)."""
        words = [i for i, (s, e) in enumerate(self.offsets) if s < char_end and e > char_start]
        return (words[0], words[-1] + 1) if words else None


@dataclass(frozen=True)
class Option:
    type: str
    prob: float


@dataclass
class Candidate:
    """A span the LLM may decide on (word indices ``start:end``, end exclusive)."""

    id: int
    start: int
    end: int
    text: str
    char_start: int
    char_end: int
    options: list[Option]  # best first, "none" always included
    kind: Literal["span", "missed", "proposed"]
    tagger_type: str | None  # the tagger's decision (None = no entity)
    confidence: float  # the tagger's probability of its own decision
    margin: float  # confidence minus the best other option
    evidence: list[str] = field(default_factory=list)  # types the discovery stage proposed

    @property
    def top_prob(self) -> float:
        """The tagger's probability of its most probable option ("none" included)."""
        return max(o.prob for o in self.options)

    @property
    def option_types(self) -> list[str]:
        return [o.type for o in self.options]

    @property
    def tie_order(self) -> list[str]:
        """Options with the tagger's own decision first: a tied vote keeps the tagger's answer
        (for a likely-missed span that is "none"), so an indifferent LLM changes nothing."""
        own = self.tagger_type or NONE
        return [own, *(t for t in self.option_types if t != own)]


def _type_mass(probs: np.ndarray, labels: list[str]) -> tuple[list[str], np.ndarray]:
    """Per word, probability mass of each entity type (B + I) and of O: ``[W, T+1]``."""
    types = label_types(labels)
    mass = np.zeros((probs.shape[0], len(types) + 1), dtype=np.float64)
    for j, lab in enumerate(labels):
        col = len(types) if (etype := tag_type(lab)) is None else types.index(etype)
        mass[:, col] += probs[:, j]
    return types, mass


def _options(span_mass: np.ndarray, types: list[str], top_k: int) -> list[Option]:
    order = np.argsort(-span_mass[:-1], kind="stable")[:top_k]
    opts = [Option(types[i], round(float(span_mass[i]), 4)) for i in order]
    return [*opts, Option(NONE, round(float(span_mass[-1]), 4))]


def extract_candidates(
    doc: Doc,
    probs: np.ndarray,
    labels: list[str],
    *,
    tags: list[str] | None = None,
    top_k: int = 3,
    missed_o_max: float = 0.6,
) -> list[Candidate]:
    """Candidates of one sentence from the tagger's word probabilities ``probs[W, L]``.

    ``tags`` are the tagger's decoded tags; without them the Viterbi decoding of ``probs``
    (valid IOB2, :func:`cdlm.model.decode.decode`).
    """
    if probs.shape != (len(doc.tokens), len(labels)):
        raise ValueError(f"probs shape {probs.shape} != ({len(doc.tokens)}, {len(labels)})")
    tags = list(tags) if tags is not None else decode(probs, labels)
    types, mass = _type_mass(probs, labels)
    out: list[Candidate] = []

    def add(start: int, end: int, kind: Literal["span", "missed"], ttype: str | None) -> None:
        span_mass = mass[start:end].mean(axis=0)
        opts = _options(span_mass, types, top_k)
        own = span_mass[types.index(ttype)] if ttype else span_mass[-1]
        others = [
            span_mass[i]
            for i in range(len(types) + 1)
            if i != (types.index(ttype) if ttype else len(types))
        ]
        if ttype and ttype not in [o.type for o in opts]:
            opts = [Option(ttype, round(float(own), 4)), *opts]
        cs, ce = doc.char_span(start, end)
        out.append(
            Candidate(
                id=0,
                start=start,
                end=end,
                text=doc.text[cs:ce],
                char_start=cs,
                char_end=ce,
                options=opts,
                kind=kind,
                tagger_type=ttype,
                confidence=round(float(own), 4),
                margin=round(float(own - max(others, default=0.0)), 4),
            )
        )

    for start, end, etype in bio_spans(tags):
        add(start, end, "span", etype)
    o_prob = mass[:, -1]
    i = 0
    while i < len(tags):
        if tags[i] == OUTSIDE and o_prob[i] < missed_o_max:
            j = i
            while j < len(tags) and tags[j] == OUTSIDE and o_prob[j] < missed_o_max:
                j += 1
            add(i, j, "missed", None)
            i = j
        else:
            i += 1
    out.sort(key=lambda c: c.start)
    for n, cand in enumerate(out):
        cand.id = n
    return out


def ground(phrase: str, text: str) -> tuple[int, int] | None:
    """Character offsets of ``phrase`` in ``text`` (exact match first, then case-insensitive);
    None when the phrase does not occur, i.e. the model invented it."""
    phrase = phrase.strip()
    if not phrase:
        return None
    at = text.find(phrase)
    if at < 0:
        at = text.casefold().find(phrase.casefold())
        if at < 0 or len(text.casefold()) != len(text):
            return None
    return at, at + len(phrase)
