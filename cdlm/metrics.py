"""Span-level NER scores: seqeval in strict IOB2 mode (a span counts only with the exact
boundaries and type), micro-averaged, plus a per-type table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class TypeScore(BaseModel):
    """Scores of one entity type; ``support`` is the number of gold spans."""

    type: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int


class SpanScores(BaseModel):
    """Micro P/R/F1 over all spans (fractions in [0, 1]) and the per-type table."""

    precision: float
    recall: float
    f1: float
    support: int  # gold spans
    predicted: int  # predicted spans
    correct: int  # exact matches
    sentences: int
    per_type: list[TypeScore]


def _strict_spans(tags: Sequence[Sequence[str]]) -> set[tuple[int, str, int, int]]:
    """(sentence, type, start, end) of every span seqeval's strict IOB2 mode accepts."""
    from seqeval.scheme import IOB2, Entities

    entities = Entities([list(t) for t in tags], IOB2, suffix=False)
    return {(e.sent_id, e.tag, e.start, e.end) for e in entities.entities for e in e}


def span_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> SpanScores:
    """Strict IOB2 micro P/R/F1 and per-type scores of predicted tags against gold tags.

    The micro numbers are seqeval's own (``precision_score`` etc. with ``mode="strict"``); the
    span counts come from the same seqeval entity extraction, so both agree by construction.
    """
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    y_true = [list(t) for t in gold]
    y_pred = [list(t) for t in pred]
    kwargs = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    gold_spans = _strict_spans(y_true)
    pred_spans = _strict_spans(y_pred)
    correct = gold_spans & pred_spans

    per_type = []
    for etype in sorted({s[1] for s in gold_spans | pred_spans}):
        n_gold = sum(1 for s in gold_spans if s[1] == etype)
        n_pred = sum(1 for s in pred_spans if s[1] == etype)
        n_ok = sum(1 for s in correct if s[1] == etype)
        p = n_ok / n_pred if n_pred else 0.0
        r = n_ok / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_type.append(
            TypeScore(type=etype, precision=p, recall=r, f1=f, support=n_gold, predicted=n_pred)
        )
    return SpanScores(
        precision=float(precision_score(y_true, y_pred, **kwargs)),
        recall=float(recall_score(y_true, y_pred, **kwargs)),
        f1=float(f1_score(y_true, y_pred, **kwargs)),
        support=len(gold_spans),
        predicted=len(pred_spans),
        correct=len(correct),
        sentences=len(gold),
        per_type=per_type,
    )


MISSED = "missed"  # column: a gold span with no predicted span at the same offsets
SPURIOUS = "spurious"  # row: a predicted span with no gold span at the same offsets


def span_confusion(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> dict[str, dict[str, int]]:
    """Type confusion over strict IOB2 spans: ``counts[gold_type][pred_type]``.

    Spans are paired by identical offsets (same sentence, start and end); a paired span counts
    in its (gold type, predicted type) cell, so the diagonal is ``correct``. A gold span with no
    predicted span at its offsets counts in ``[gold_type]["missed"]``, a predicted span with no
    gold one in ``["spurious"][pred_type]``; a boundary error is therefore one of each. Only
    non-zero cells are present."""
    gold_spans = {(s, a, b): t for s, t, a, b in _strict_spans([list(x) for x in gold])}
    pred_spans = {(s, a, b): t for s, t, a, b in _strict_spans([list(x) for x in pred])}
    counts: dict[str, dict[str, int]] = {}

    def add(row: str, col: str) -> None:
        counts.setdefault(row, {})
        counts[row][col] = counts[row].get(col, 0) + 1

    for where, gtype in gold_spans.items():
        add(gtype, pred_spans.get(where, MISSED))
    for where, ptype in pred_spans.items():
        if where not in gold_spans:
            add(SPURIOUS, ptype)
    return counts


def sentence_counts(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
) -> list[tuple[int, int, int]]:
    """Per sentence ``(correct, predicted, gold)`` strict spans: summed over any subset of
    sentences they give that subset's micro-F1 (paired bootstrap over sentences)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    gold_spans = _strict_spans([list(t) for t in gold])
    pred_spans = _strict_spans([list(t) for t in pred])
    counts = [[0, 0, 0] for _ in gold]
    for span in pred_spans:
        counts[span[0]][1] += 1
        counts[span[0]][0] += span in gold_spans
    for span in gold_spans:
        counts[span[0]][2] += 1
    return [(c, p, g) for c, p, g in counts]


def counts_f1(counts: np.ndarray) -> np.ndarray:
    """Micro-F1 from summed ``(correct, predicted, gold)`` counts along the last axis."""
    correct, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denom = predicted + gold
    return np.where(denom > 0, 2.0 * correct / np.maximum(denom, 1), 0.0)


def paired_bootstrap(
    variant: Sequence[Sequence[Sequence[Sequence[int]]]],
    baseline: Sequence[Sequence[Sequence[Sequence[int]]]],
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """F1 difference (variant - baseline, mean over runs, then mean over domains) and its
    percentile interval, by a paired bootstrap over test sentences.

    ``variant[d][r]`` holds run r's per-sentence ``(correct, predicted, gold)`` on domain d
    (:func:`sentence_counts`), all runs of a domain over the same sentences. Each resample draws
    every domain's sentences with replacement, the same draw for all of its runs: paired, so
    the interval reflects how the difference depends on the test sentences (seed-to-seed
    variation enters through the mean over runs, not through the resampling)."""
    rng = np.random.default_rng(seed)
    observed, samples = 0.0, np.zeros(resamples)
    for runs_v, runs_b in zip(variant, baseline, strict=True):
        v = np.asarray(runs_v, dtype=np.int64)  # [runs, sentences, 3]
        b = np.asarray(runs_b, dtype=np.int64)
        if v.shape[1:] != b.shape[1:]:
            raise ValueError(f"runs over different test sentences: {v.shape} vs {b.shape}")
        observed += counts_f1(v.sum(1)).mean() - counts_f1(b.sum(1)).mean()
        n_sent = v.shape[1]
        idx = rng.integers(0, n_sent, size=(resamples, n_sent))
        # times[r, s]: how often resample r drew sentence s. A run's summed counts under every
        # resample are then one matrix product (exact: small integers in float64), not a
        # gather of resamples x sentences x 3 per run.
        flat = (np.arange(resamples)[:, None] * n_sent + idx).ravel()
        times = np.bincount(flat, minlength=resamples * n_sent).reshape(resamples, n_sent)
        times = times.astype(np.float64)
        f_v = np.stack([counts_f1(times @ run) for run in v]).mean(0)
        f_b = np.stack([counts_f1(times @ run) for run in b]).mean(0)
        samples += f_v - f_b
    n = len(variant)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(samples / n, [tail, 100 - tail])
    return float(observed / n), float(lo), float(hi)
