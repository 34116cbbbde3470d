"""The one span decoder: strict IOB2, as seqeval's strict mode scores it, and every part of cdlm
that reads spans agrees with it (a stray ``I-X`` is no entity anywhere)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cdlm.data.spans import Entity, Span, bio_spans, span_tags
from cdlm.data.text import tokenize
from cdlm.experiments.probe import canonical_tags
from cdlm.inference.tagging import entities_from
from cdlm.metrics import span_scores
from cdlm.reasoning.candidates import Doc, extract_candidates


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        (["I-a"], []),  # a sentence may not start inside a span
        (["O", "I-a", "I-a"], []),  # nor continue one after O
        (["B-a", "I-b"], [(0, 1, "a")]),  # I-b does not continue an a span
        (["B-a", "I-a", "I-b", "I-b"], [(0, 2, "a")]),
        (["B-a", "B-a", "I-a", "O"], [(0, 1, "a"), (1, 3, "a")]),
        (["B-a", "I-a", "O", "B-b"], [(0, 2, "a"), (3, 4, "b")]),
        ([], []),
    ],
)
def test_stray_inside_tag_is_no_entity(tags: list[str], spans: list[tuple]) -> None:
    assert bio_spans(tags) == spans
    assert all(isinstance(s, Span) for s in bio_spans(tags))


def test_agrees_with_seqeval_strict_on_random_tags() -> None:
    from seqeval.scheme import IOB2, Entities

    rng = random.Random(0)
    alphabet = ["O", "B-a", "I-a", "B-b", "I-b"]
    for _ in range(2000):
        tags = [rng.choice(alphabet) for _ in range(rng.randint(1, 9))]
        (theirs,) = Entities([tags], IOB2, suffix=False).entities
        assert bio_spans(tags) == [(e.start, e.end, e.tag) for e in theirs], tags


def test_span_tags_is_the_inverse_on_valid_tags() -> None:
    tags = ["B-a", "I-a", "O", "B-b", "B-b", "I-b"]
    assert span_tags(len(tags), bio_spans(tags)) == tags
    assert span_tags(3, bio_spans(["O", "I-a", "I-a"])) == ["O", "O", "O"]


def test_every_reader_drops_a_stray_inside_tag() -> None:
    """Prediction, reasoning candidates, the probe and the metrics all see one entity in
    ``Merkel I-person Paris`` tagged B-politician / O / I-location: the stray I-location is
    nothing to any of them."""
    text = "Merkel met Paris"
    tokens = tokenize(text)
    labels = ["O", "B-politician", "I-politician", "B-location", "I-location"]
    tags = ["B-politician", "O", "I-location"]
    probs = np.full((3, len(labels)), 0.1)
    for w, tag in enumerate(tags):
        probs[w, labels.index(tag)] = 0.6
    expected = [(0, 1, "politician")]

    assert bio_spans(tags) == expected
    entities = entities_from(text, tokens, probs, tags, labels)
    assert entities == [Entity(0, 6, "Merkel", "politician", 0.6, "tagger", 0, 1)]
    doc = Doc(text, tuple(t.text for t in tokens), tuple((t.start, t.end) for t in tokens))
    cands = extract_candidates(doc, probs, labels, tags=tags, missed_o_max=0.0)
    assert [(c.start, c.end, c.tagger_type) for c in cands] == expected
    assert canonical_tags(tags) == ("B-politician", "O", "O")
    scores = span_scores([["B-politician", "O", "O"]], [tags])
    assert (scores.predicted, scores.correct) == (1, 1)
