"""From per-word tag probabilities to IOB2 tags and entity spans.

The head scores every word independently, so a plain argmax can emit ``I-X`` after ``O`` or after
another type; strict seqeval then drops that span. ``viterbi`` (the default, ``tagger.decode``)
returns the most probable tag sequence that is valid IOB2 instead, using the per-word log
probabilities and hard transition constraints — no learned transition scores (no CRF).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """An entity over words ``[start, end)``."""

    label: str
    start: int
    end: int


def _constraints(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Log-space masks: which tags may start a sentence and which may follow which."""
    n = len(labels)
    start = np.zeros(n)
    trans = np.zeros((n, n))
    for j, cur in enumerate(labels):
        if cur.startswith("I-"):
            start[j] = -np.inf
            for i, prev in enumerate(labels):
                if prev[2:] != cur[2:] or prev == "O":
                    trans[i, j] = -np.inf
    return start, trans


def viterbi(probs: np.ndarray, labels: list[str]) -> list[str]:
    """The most probable valid IOB2 tag sequence for ``probs`` [W, L]."""
    if len(probs) == 0:
        return []
    start, trans = _constraints(labels)
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    score = logp[0] + start
    back = np.zeros((len(probs), len(labels)), dtype=np.int64)
    for w in range(1, len(probs)):
        cand = score[:, None] + trans
        back[w] = cand.argmax(axis=0)
        score = cand.max(axis=0) + logp[w]
    best = [int(score.argmax())]
    for w in range(len(probs) - 1, 0, -1):
        best.append(int(back[w, best[-1]]))
    return [labels[i] for i in reversed(best)]


def decode(probs: np.ndarray, labels: list[str], method: str = "viterbi") -> list[str]:
    """Tags for one sentence: ``viterbi`` (valid IOB2) or ``argmax``."""
    if method == "viterbi":
        return viterbi(probs, labels)
    return [labels[i] for i in probs.argmax(axis=-1)] if len(probs) else []


def spans(tags: list[str] | tuple[str, ...]) -> list[Span]:
    """Entities in strict IOB2: a span starts at ``B-X`` and continues over ``I-X``; a stray
    ``I-X`` starts nothing (as seqeval's strict mode)."""
    out: list[Span] = []
    label, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        inside = label is not None and tag == f"I-{label}"
        if inside:
            continue
        if label is not None:
            out.append(Span(label, start, i))
            label = None
        if tag.startswith("B-"):
            label, start = tag[2:], i
    return out
