"""Input-level interventions of the causal module (docs/DESIGN.md, "Causal module").

Each view is a new list of words for one more encoder pass. The word count is kept wherever the
tags must stay aligned (the masked views); the swap view changes span lengths and re-tags them.

- :func:`context_only` — every entity word becomes a mask (``masked[i] = True``): the encoder
  sees the context and a placeholder, never the name.
- :func:`entity_only` — the mirror image: every non-entity word is masked.
- :func:`swap_entities` — every gold span whose type has another name in ``names`` is replaced
  by one drawn at random (``B-t`` then ``I-t`` for the new length; the words around keep their
  tags, which stays valid IOB2 since a span always ends before an ``O`` or a ``B-``). The
  returned pairs say where each original span went, for span-level comparisons.

A mask is a flag, not a string: the batch builder turns a flagged word into the encoder's own
mask token (one piece) with the padding word shape, so no real word is ever mistaken for it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from cdlm.data.spans import OUTSIDE, bio_spans

Mention = tuple[str, ...]
Span = tuple[int, int]


def context_only(tags: Sequence[str]) -> list[bool]:
    """The mask flags of the context-only view: True on entity words."""
    return [tag != OUTSIDE for tag in tags]


def entity_only(entity: Sequence[bool]) -> list[bool]:
    """The mask flags of the entity-only view: True on every word that is not an entity."""
    return [not e for e in entity]


def swap_entities(
    tokens: Sequence[str],
    tags: Sequence[str],
    names: Mapping[str, Sequence[Mention]],
    rng: random.Random,
) -> tuple[list[str], list[str], list[tuple[Span, Span]]] | None:
    """``(tokens, tags, [(old span, new span), ...])`` with every swappable span replaced, or
    None when no span of the sentence has another name of its type."""
    out_tokens: list[str] = []
    out_tags: list[str] = []
    pairs: list[tuple[Span, Span]] = []
    pos = 0
    swapped = False
    for start, end, etype in bio_spans(tags):
        out_tokens += tokens[pos:start]
        out_tags += tags[pos:start]
        current = tuple(tokens[start:end])
        pool = [m for m in names.get(etype, ()) if m and m != current]
        mention = current
        if pool:
            mention, swapped = pool[rng.randrange(len(pool))], True
        new_start = len(out_tokens)
        out_tokens += mention
        out_tags += [f"B-{etype}"] + [f"I-{etype}"] * (len(mention) - 1)
        pairs.append(((start, end), (new_start, len(out_tokens))))
        pos = end
    out_tokens += tokens[pos:]
    out_tags += tags[pos:]
    return (out_tokens, out_tags, pairs) if swapped else None
