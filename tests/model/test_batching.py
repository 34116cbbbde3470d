"""Forward batches with bounded padding: same outputs as fixed batches, fewer padded pieces."""

from __future__ import annotations

import numpy as np

from cdlm.model.batching import length_batches


def _padded(batches: list[list[int]], cost: list[int]) -> int:
    return sum(max(cost[i] for i in b) * len(b) for b in batches)


def test_without_a_padding_bound_batches_are_fixed_chunks() -> None:
    cost = [3, 3, 4, 9, 20, 21, 22]
    assert length_batches(range(7), cost, 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_ends_before_its_padding_passes_the_bound() -> None:
    cost = [10, 10, 10, 11, 30, 31, 90]
    batches = length_batches(range(7), cost, 64, max_padding=0.05)
    assert batches == [[0, 1, 2], [3], [4, 5], [6]]  # 11 x 4 would pad 7% over 41
    assert [i for b in batches for i in b] == list(range(7))  # each once, in order
    for b in batches:
        real = sum(cost[i] for i in b)
        assert len(b) == 1 or max(cost[i] for i in b) * len(b) <= 1.05 * real
    # a batch still stops at max_size, and a lone long text is a batch of its own
    assert length_batches(range(4), [5, 5, 5, 5], 2, max_padding=0.05) == [[0, 1], [2, 3]]
    assert length_batches([0], [500], 64, max_padding=0.0) == [[0]]


def test_bounded_batches_pad_less_on_real_sentences_and_tag_the_same(
    crossner_dir, tiny_tagger
) -> None:
    from cdlm.data.registry import load_split

    words = [list(s.tokens) for s in load_split("politics", "test", crossner_dir)[:256]]
    pieces = tiny_tagger.builder.word_pieces(words)
    cost = [2 + sum(map(len, p)) for p in pieces]
    order = sorted(range(len(words)), key=cost.__getitem__)
    fixed, bounded = length_batches(order, cost, 64), length_batches(order, cost, 64, 0.05)
    assert _padded(bounded, cost) <= 1.05 * sum(cost) < _padded(fixed, cost)

    plain = tiny_tagger.predict_proba(words, 64)
    tight = tiny_tagger.predict_proba(words, 64, max_padding=0.05)
    assert [p.shape for p in tight] == [p.shape for p in plain]
    assert max(float(np.abs(a - b).max()) for a, b in zip(plain, tight, strict=True)) < 1e-4
    assert [list(p.argmax(-1)) for p in tight] == [list(p.argmax(-1)) for p in plain]
