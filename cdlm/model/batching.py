"""Forward batches of sentences sorted by length, with padding bounded.

The encoder pays for every padded position, and a batch pads every sentence to its longest. A
fixed batch size over a sorted task still pads a lot where lengths are spread out;
``max_padding`` ends a batch early instead, before its padded cost would exceed
``1 + max_padding`` times its real cost. On a CPU a smaller batch costs about the same per
position, so fewer padded positions is time saved (``evals/bench_corpus.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Sequence


def length_batches(
    order: Sequence[int], cost: Sequence[int], max_size: int, max_padding: float | None = None
) -> list[list[int]]:
    """Consecutive batches of ``order`` (indices sorted by ``cost``, ascending), each at most
    ``max_size`` long; with ``max_padding``, a batch also ends before ``longest * count`` would
    pass ``(1 + max_padding) * sum(cost)``. A batch always takes at least one index."""
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:  # ascending, so ``cost[i]`` is the longest of the batch it joins
        full = len(batch) >= max_size
        padded = max_padding is not None and cost[i] * (len(batch) + 1) > (1 + max_padding) * (
            real + cost[i]
        )
        if batch and (full or padded):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += cost[i]
    if batch:
        batches.append(batch)
    return batches
