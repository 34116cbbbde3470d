"""``cdlm.model.decode``: Viterbi against brute force over every valid IOB2 sequence, and the
argmax mode against the per-word argmax (the span reader is checked in tests/data/test_spans)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cdlm.data.spans import bio_spans
from cdlm.model.decode import decode, viterbi

LABEL_SETS = {
    "one type": ["O", "B-X", "I-X"],
    "two types": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    # The decoder must not rely on the order of the label list.
    "three types, shuffled": ["I-LOC", "B-ORG", "O", "B-PER", "I-ORG", "B-LOC", "I-PER"],
}


def valid_iob2(tags: tuple[str, ...]) -> bool:
    """Strict IOB2: ``I-X`` only right after ``B-X`` or ``I-X``."""
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:  # "O"[2:] is "": no type
            return False
        prev = tag
    return True


def brute_force(probs: np.ndarray, labels: list[str]) -> tuple[tuple[str, ...], float, float]:
    """The best valid sequence by enumerating all of them; also the runner-up's log score
    (to skip the rare table where two sequences tie within float noise)."""
    logp = np.log(probs)
    scored = []
    for seq in itertools.product(range(len(labels)), repeat=len(probs)):
        tags = tuple(labels[i] for i in seq)
        if valid_iob2(tags):
            scored.append((float(sum(logp[w, i] for w, i in enumerate(seq))), tags))
    scored.sort(reverse=True)
    runner_up = scored[1][0] if len(scored) > 1 else -np.inf
    return scored[0][1], scored[0][0], runner_up


def random_tables(labels: list[str], seed: int):
    """Seeded probability tables of 1..5 words; a peaked Dirichlet so argmax often breaks IOB2."""
    rng = np.random.default_rng(seed)
    for length in range(1, 6):
        for _ in range(6):
            yield rng.dirichlet(np.full(len(labels), 0.3), size=length)


@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_viterbi_equals_brute_force_over_valid_sequences(name: str) -> None:
    labels = LABEL_SETS[name]
    checked = argmax_invalid = 0
    for probs in random_tables(labels, seed=len(labels)):
        best, best_score, runner_up = brute_force(probs, labels)
        if best_score - runner_up < 1e-9:
            continue  # a tie: either answer is right
        got = viterbi(probs, labels)
        assert tuple(got) == best, (probs.round(3), got, best)
        assert decode(probs, labels) == got  # viterbi is the default method
        checked += 1
        argmax_invalid += not valid_iob2(tuple(decode(probs, labels, "argmax")))
    assert checked >= 25
    # The tables exercise the constraints: the unconstrained argmax breaks IOB2 on some of them.
    assert argmax_invalid > 0


@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_argmax_mode_is_the_per_word_argmax(name: str) -> None:
    labels = LABEL_SETS[name]
    for probs in random_tables(labels, seed=100 + len(labels)):
        got = decode(probs, labels, "argmax")
        assert got == [labels[int(np.argmax(row))] for row in probs]
        if valid_iob2(tuple(got)):  # nothing to repair: Viterbi agrees with the argmax
            assert viterbi(probs, labels) == got


def test_a_stray_inside_tag_is_repaired_by_viterbi_and_dropped_from_argmax_spans() -> None:
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # word 0: O; word 1: I-PER by argmax (invalid after O), B-PER close behind
    probs = np.array(
        [
            [0.90, 0.02, 0.02, 0.03, 0.03],
            [0.10, 0.35, 0.40, 0.05, 0.10],
            [0.10, 0.05, 0.70, 0.05, 0.10],
        ]
    )
    assert decode(probs, labels, "argmax") == ["O", "I-PER", "I-PER"]
    assert bio_spans(decode(probs, labels, "argmax")) == []  # strict: a span needs its B-
    assert viterbi(probs, labels) == ["O", "B-PER", "I-PER"]
    assert bio_spans(viterbi(probs, labels)) == [(1, 3, "PER")]


def test_empty_sentence() -> None:
    empty = np.zeros((0, 3))
    assert viterbi(empty, ["O", "B-X", "I-X"]) == []
    assert decode(empty, ["O", "B-X", "I-X"], "argmax") == []
