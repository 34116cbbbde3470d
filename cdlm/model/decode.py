"""From per-word tag probabilities to IOB2 tags (spans from tags: :mod:`cdlm.data.spans`).

The head scores every word independently, so a plain argmax can emit ``I-X`` after ``O`` or after
another type; strict seqeval then drops that span. ``viterbi`` (the default, ``tagger.decode``)
returns the most probable tag sequence that is valid IOB2 instead, using the per-word log
probabilities and hard transition constraints — no learned transition scores (no CRF).
"""

from __future__ import annotations

import functools

import numpy as np

from cdlm.data.spans import tag_type


@functools.lru_cache(maxsize=64)
def _constraints(labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Log-space masks: which tags may start a sentence and which may follow which (built
    once per label set: decoding calls this for every sentence)."""
    n = len(labels)
    start = np.zeros(n)
    trans = np.zeros((n, n))
    for j, cur in enumerate(labels):
        if cur.startswith("I-"):
            start[j] = -np.inf
            for i, prev in enumerate(labels):
                if tag_type(prev) != tag_type(cur):
                    trans[i, j] = -np.inf
    return start, trans


def viterbi(probs: np.ndarray, labels: list[str]) -> list[str]:
    """The most probable valid IOB2 tag sequence for ``probs`` [W, L]."""
    if len(probs) == 0:
        return []
    start, trans = _constraints(tuple(labels))
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
