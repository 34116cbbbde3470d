"""Span-level NER scores: seqeval in strict IOB2 mode (a span counts only with the exact
boundaries and type), micro-averaged, plus a per-type table."""

from __future__ import annotations

from collections.abc import Sequence

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
