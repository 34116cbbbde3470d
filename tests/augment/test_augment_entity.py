"""Entity-level semi-facts: span swaps keep valid IOB2 whatever the lengths; ratios and seeds."""

from __future__ import annotations

from collections import Counter

from cdlm.augment.entity import build_entity_base, entity_semifacts, replace_span
from cdlm.data.bio import Sentence, format_bio, parse_bio_lines
from cdlm.data.spans import bio_spans


def _valid_iob2(sent: Sentence) -> bool:
    # The strict reader raises on any I- that does not continue an entity of its type.
    back = parse_bio_lines(format_bio([sent]).splitlines()).sentences
    return back == [sent]


SENT = Sentence(
    tokens=("Obama", "met", "the", "Liberal", "Democratic", "Party", "in", "Paris", "."),
    tags=(
        "B-politician",
        "O",
        "O",
        "B-politicalparty",
        "I-politicalparty",
        "I-politicalparty",
        "O",
        "B-location",
        "O",
    ),
)


def test_one_word_span_becomes_three_words():
    new = replace_span(SENT, 0, 1, ("Angela", "Dorothea", "Merkel"), "politician")
    assert new.tokens[:4] == ("Angela", "Dorothea", "Merkel", "met")
    assert new.tags[:4] == ("B-politician", "I-politician", "I-politician", "O")
    assert len(new.tokens) == len(new.tags) == len(SENT.tokens) + 2
    assert _valid_iob2(new)
    assert [s[2] for s in bio_spans(new.tags)] == [s[2] for s in bio_spans(SENT.tags)]


def test_three_word_span_becomes_one_word():
    new = replace_span(SENT, 3, 6, ("Labour",), "politicalparty")
    assert new.tokens == ("Obama", "met", "the", "Labour", "in", "Paris", ".")
    assert new.tags == ("B-politician", "O", "O", "B-politicalparty", "O", "B-location", "O")
    assert _valid_iob2(new)


def test_adjacent_spans_of_same_type_stay_separate():
    sent = Sentence(("France", "Germany"), ("B-country", "B-country"))
    new = replace_span(sent, 0, 1, ("United", "Kingdom"), "country")
    assert bio_spans(new.tags) == [(0, 2, "country"), (2, 3, "country")]
    assert _valid_iob2(new)


def test_real_semifacts_are_valid_and_swap_exactly_one_span(politics_train):
    sents = politics_train[:40]
    gen, stats = entity_semifacts(sents, build_entity_base(politics_train), 8, seed=3)
    assert stats.generated == len(gen) > 0
    for g in gen:
        orig = sents[g.origin]
        assert _valid_iob2(g.sentence)
        (rep,) = g.replacements
        old_len = rep.end - rep.start
        new_len = len(rep.new.split())
        assert len(g.sentence.tokens) == len(orig.tokens) - old_len + new_len
        assert g.sentence.tokens[: rep.start] == orig.tokens[: rep.start]
        assert g.sentence.tokens[rep.start + new_len :] == orig.tokens[rep.end :]
        assert (rep.start, rep.end, rep.label) in bio_spans(orig.tags)
        assert (rep.start, rep.start + new_len, rep.label) in bio_spans(g.sentence.tags)
        assert rep.old != rep.new
    assert any(
        len(g.replacements[0].new.split()) != g.replacements[0].end - g.replacements[0].start
        for g in gen
    ), "expected some length-changing swaps"


def test_ratio_respected_and_seed_deterministic(politics_train):
    sents = politics_train[:30]
    base = build_entity_base(politics_train)
    for ratio in (1, 3, 8):
        gen, _ = entity_semifacts(sents, base, ratio, seed=7)
        per_origin = Counter(g.origin for g in gen)
        assert max(per_origin.values()) <= ratio
        # Politics has hundreds of mentions per type: every sentence reaches the ratio.
        assert sum(per_origin.values()) == ratio * len(sents)
        assert len({(g.origin, g.sentence.tokens) for g in gen}) == len(gen)  # no duplicates
    a, _ = entity_semifacts(sents, base, 4, seed=7)
    b, _ = entity_semifacts(sents, base, 4, seed=7)
    c, _ = entity_semifacts(sents, base, 4, seed=8)
    assert a == b
    assert [g.sentence for g in a] != [g.sentence for g in c]


def test_no_alternatives_and_no_entities_are_counted_not_fatal():
    sents = [
        Sentence(("Kohl", "won", "."), ("B-politician", "O", "O")),
        Sentence(("Kohl", "spoke", "."), ("B-politician", "O", "O")),  # same single mention
        Sentence(("It", "rained", "."), ("O", "O", "O")),
    ]
    gen, stats = entity_semifacts(sents, build_entity_base(sents), 8, seed=1)
    assert gen == []
    assert stats.no_alternative == {"politician": 2}
    assert stats.sentences_without_entities == 1
    empty = build_entity_base(sents[2:])
    assert len(empty) == 0
    assert entity_semifacts(sents, empty, 8, seed=1)[0] == []


def test_extra_base_adds_only_shared_types():
    target = [Sentence(("Kohl", "visited", "Bonn"), ("B-politician", "O", "B-location"))]
    source = [Sentence(("Paris", "and", "IBM"), ("B-location", "O", "B-organisation"))]
    base = build_entity_base(target, source)
    assert base.mentions["location"] == (("Bonn",), ("Paris",))
    assert "organisation" not in base.mentions
