"""The causal module's input-level views: which words they replace, and valid IOB2 after a swap."""

from __future__ import annotations

import random

import pytest

from cdlm.data.spans import bio_spans
from cdlm.model.views import context_only, entity_only, swap_entities

TOKENS = ("Angela", "Merkel", "met", "the", "SPD", "in", "Bonn", ".")
TAGS = ("B-politician", "I-politician", "O", "O", "B-party", "O", "B-location", "O")
NAMES = {
    "politician": (("Olof", "Palme"), ("Willy", "Brandt", "Jr")),
    "party": (("Labour",), ("SPD",)),
}


def _valid_iob2(tags) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


def test_context_only_masks_exactly_the_entity_words():
    flags = context_only(TAGS)
    assert [t for t, f in zip(TOKENS, flags, strict=True) if f] == [
        "Angela",
        "Merkel",
        "SPD",
        "Bonn",
    ]
    assert len(flags) == len(TOKENS)  # word count kept: the gold tags still align


def test_entity_only_is_the_mirror_image():
    entity = context_only(TAGS)
    flags = entity_only(entity)
    assert [t for t, f in zip(TOKENS, flags, strict=True) if not f] == [
        "Angela",
        "Merkel",
        "SPD",
        "Bonn",
    ]
    assert all(a != b for a, b in zip(entity, flags, strict=True))


@pytest.mark.parametrize("seed", range(20))
def test_swap_replaces_only_swappable_spans_and_keeps_iob2(seed):
    out = swap_entities(TOKENS, TAGS, NAMES, random.Random(seed))
    assert out is not None
    tokens, tags, pairs = out
    assert len(tokens) == len(tags) and _valid_iob2(tags)
    # The same spans, in order, with the same types; only their words may change.
    old_spans, new_spans = bio_spans(TAGS), bio_spans(tags)
    assert [s[2] for s in new_spans] == [s[2] for s in old_spans]
    assert [p[0] for p in pairs] == [(s, e) for s, e, _ in old_spans]
    assert [p[1] for p in pairs] == [(s, e) for s, e, _ in new_spans]
    # The context words are untouched and in place around the spans.
    context = [w for w, t in zip(TOKENS, TAGS, strict=True) if t == "O"]
    assert [w for w, t in zip(tokens, tags, strict=True) if t == "O"] == context
    # A type with other names always changes; one without ("location") never does.
    (p0, n0), (p1, n1), (p2, n2) = pairs
    assert tuple(tokens[n0[0] : n0[1]]) in NAMES["politician"]
    assert tuple(tokens[n1[0] : n1[1]]) == ("Labour",)  # the only other party name
    assert tokens[n2[0] : n2[1]] == ["Bonn"]


def test_swap_without_any_other_name_returns_none():
    assert swap_entities(TOKENS, TAGS, {"party": (("SPD",),)}, random.Random(0)) is None
    assert swap_entities(("a", "b"), ("O", "O"), NAMES, random.Random(0)) is None
