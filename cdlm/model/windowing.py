"""Split a sentence's sub-word pieces into overlapping encoder windows and pick, for each word,
the window it is read from.

A sentence whose pieces do not fit ``max_pieces`` (including ``[CLS]``/``[SEP]``) is never cut:
it is covered by word-aligned windows that overlap by about ``stride`` pieces, and each word is
labelled from the window where it is most central (most context on its worse side). A sentence
that fits is one window, exactly as without windowing. Only a single word longer than a whole
window loses its trailing pieces; the word is still labelled, from its first piece.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowPlan:
    """Windows as piece-id lists (with special tokens) and, per word, where its first piece is."""

    windows: list[list[int]]
    word_window: list[int]  # index into ``windows``
    word_position: list[int]  # position of the word's first piece inside that window


def plan_windows(
    word_pieces: list[list[int]], max_pieces: int, stride: int, cls_id: int, sep_id: int
) -> WindowPlan:
    """Cover all words with windows of at most ``max_pieces`` pieces (special tokens included)."""
    room = max_pieces - 2
    if stride >= room:
        raise ValueError(f"encoder.stride ({stride}) must be smaller than max_pieces - 2 ({room})")
    pieces = [p[:room] for p in word_pieces]
    starts = [0]  # piece offset of each word in the whole sentence
    for p in pieces:
        starts.append(starts[-1] + len(p))
    n = len(pieces)

    # Word-aligned spans [first, last) so that each span's pieces fit into ``room``.
    spans: list[tuple[int, int]] = []
    first = 0
    while True:
        last = first
        while last < n and starts[last + 1] - starts[first] <= room:
            last += 1
        spans.append((first, last))
        if last >= n:
            break
        # Next window starts at the first word within the last ``stride`` pieces, but always
        # moves forward by at least one word.
        nxt = last
        while nxt - 1 > first and starts[last] - starts[nxt - 1] <= stride:
            nxt -= 1
        first = max(nxt, first + 1)

    windows = [
        [cls_id] + [pid for w in range(a, b) for pid in pieces[w]] + [sep_id] for a, b in spans
    ]
    word_window = [0] * n
    word_position = [0] * n
    best = [-1] * n
    for k, (a, b) in enumerate(spans):
        length = starts[b] - starts[a]
        for w in range(a, b):
            offset = starts[w] - starts[a]
            centrality = min(offset, length - offset - len(pieces[w]))
            if centrality > best[w]:
                best[w] = centrality
                word_window[w] = k
                word_position[w] = 1 + offset  # +1 for [CLS]
    return WindowPlan(windows, word_window, word_position)
