"""Strict IOB2 span scores against spans counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cdlm.metrics import span_scores

GOLD = [
    ["B-person", "I-person", "O", "B-location", "O"],  # Angela Merkel | Berlin
    ["B-organisation", "I-organisation", "I-organisation", "O"],  # one 3-word org
    ["O", "B-person", "O", "B-person"],  # two persons
]


def test_hand_counted_spans() -> None:
    pred = [
        ["B-person", "I-person", "O", "B-organisation", "O"],  # person ok; Berlin wrong type
        ["B-organisation", "I-organisation", "O", "O"],  # org boundary wrong
        ["O", "B-person", "O", "B-person"],  # both right
    ]
    s = span_scores(GOLD, pred)
    # gold spans 2 + 1 + 2 = 5; predicted 2 + 1 + 2 = 5; correct: Merkel + 2 persons = 3
    assert (s.support, s.predicted, s.correct) == (5, 5, 3)
    assert s.precision == pytest.approx(3 / 5)
    assert s.recall == pytest.approx(3 / 5)
    assert s.f1 == pytest.approx(0.6)
    by_type = {t.type: t for t in s.per_type}
    assert by_type["person"].support == 3 and by_type["person"].f1 == pytest.approx(1.0)
    assert by_type["location"].support == 1 and by_type["location"].recall == 0.0
    org = by_type["organisation"]  # 1 gold, 2 predicted (Berlin as org, short org), 0 right
    assert (org.support, org.predicted, org.f1) == (1, 2, 0.0)


def test_strict_mode_drops_invalid_spans() -> None:
    """An I- without its B- is no span in strict IOB2 (the lenient conlleval mode counts it)."""
    gold = [["B-misc", "I-misc", "O"]]
    pred = [["O", "I-misc", "O"]]
    s = span_scores(gold, pred)
    assert (s.support, s.predicted, s.correct) == (1, 0, 0)
    assert s.f1 == 0.0


def test_partial_credit_is_none_and_precision_recall_differ() -> None:
    gold = [["B-a", "O", "B-b", "I-b", "O", "B-c"]]
    pred = [["B-a", "O", "B-b", "O", "O", "O"]]  # a right, b too short, c missed
    s = span_scores(gold, pred)
    assert s.precision == pytest.approx(1 / 2)
    assert s.recall == pytest.approx(1 / 3)
    assert s.f1 == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_perfect_and_empty() -> None:
    assert span_scores(GOLD, GOLD).f1 == 1.0
    empty = span_scores([["O", "O"]], [["O", "O"]])
    assert (empty.f1, empty.support, empty.per_type) == (0.0, 0, [])


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="sentence 0"):
        span_scores([["O", "O"]], [["O"]])


def test_span_confusion_hand_counted() -> None:
    """Pairs by identical offsets: a wrong type is a confusion cell, a wrong boundary is one
    missed plus one spurious."""
    from cdlm.metrics import span_confusion

    pred = [
        ["B-person", "I-person", "O", "B-organisation", "O"],  # Merkel ok; Berlin as org
        ["B-organisation", "I-organisation", "O", "O"],  # org cut short: missed + spurious
        ["O", "B-person", "O", "O"],  # one person found, one missed
    ]
    assert span_confusion(GOLD, pred) == {
        "person": {"person": 2, "missed": 1},
        "location": {"organisation": 1},
        "organisation": {"missed": 1},
        "spurious": {"organisation": 1},
    }
    s = span_scores(GOLD, pred)
    counts = span_confusion(GOLD, pred)
    assert sum(counts.get(t, {}).get(t, 0) for t in counts) == s.correct


def test_sentence_counts_sum_to_the_micro_scores() -> None:
    from cdlm.metrics import counts_f1, sentence_counts

    gold = [["B-a", "O", "B-b", "I-b"], ["O", "B-c"], ["O"]]
    pred = [["B-a", "O", "B-b", "O"], ["O", "B-c"], ["B-a"]]
    counts = sentence_counts(gold, pred)
    assert counts == [(1, 2, 2), (1, 1, 1), (0, 1, 0)]
    total = np.asarray(counts).sum(0)
    assert counts_f1(total) == pytest.approx(span_scores(gold, pred).f1)


def test_paired_bootstrap_by_hand() -> None:
    from cdlm.metrics import paired_bootstrap

    # Baseline finds 1 of 2 spans in every sentence; the variant finds both in every sentence:
    # every resample gives the same difference, 1.0 - 2/3.
    base = [[(1, 1, 2)] * 40]
    better = [[(2, 2, 2)] * 40]
    delta, lo, hi = paired_bootstrap([better], [base], resamples=200)
    assert delta == lo == hi == pytest.approx(1 - 2 / 3)
    # Identical runs: difference and interval are exactly 0.
    assert paired_bootstrap([base], [base], resamples=50) == (0.0, 0.0, 0.0)
    # The variant wins half the sentences and loses the other half: an interval around 0.
    mixed = [[(2, 2, 2)] * 20 + [(0, 0, 2)] * 20]
    delta, lo, hi = paired_bootstrap([mixed], [base], resamples=500, seed=1)
    assert lo < delta < hi and lo < 0 < hi
    # Two domains: the delta is the mean of the per-domain deltas.
    delta, _, _ = paired_bootstrap([better, base], [base, base], resamples=20)
    assert delta == pytest.approx((1 - 2 / 3) / 2)
