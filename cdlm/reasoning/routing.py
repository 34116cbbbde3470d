"""Which sentences, and which of their candidates, go to the LLM.

A candidate is *hard* when the tagger's confidence in its own decision is below ``threshold`` or
its margin over the next option is below ``margin``; a sentence is routed when it has a hard
candidate, and only its hard candidates are asked about (the easy ones keep the tagger's answer).
``budget`` caps the routed share: the hardest sentences (lowest minimum confidence) first. A
budget without a threshold or margin ranks every sentence that has candidates.

Calibration (``calibrate``) picks, on dev, the routed share with the best F1 among
``routing.calibration_shares`` (0.0 = route nothing is always tried, so the calibrated pipeline is
never worse than the tagger on dev); ties go to the smaller share (fewer calls). The share becomes
a confidence threshold: the midpoint between the last routed and the first kept dev sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cdlm.config import RoutingConfig
from cdlm.reasoning.candidates import Candidate

EVERYTHING = 1.0 + 1e-9  # a threshold above every confidence


def difficulty(cands: Sequence[Candidate]) -> float:
    """A sentence's hardness as the tagger's lowest confidence (1.0 = nothing to ask)."""
    return min((c.confidence for c in cands), default=1.0)


@dataclass(frozen=True)
class Router:
    threshold: float = 0.0
    margin: float = 0.0
    budget: float | None = None

    @classmethod
    def from_config(cls, cfg: RoutingConfig) -> Router:
        return cls(cfg.threshold, cfg.margin, cfg.budget)

    @classmethod
    def everything(cls) -> Router:
        """Every candidate is hard (a confidence is at most 1)."""
        return cls(threshold=EVERYTHING)

    def rule(self) -> str:
        """The rule in words, as output records state it: ``confidence < 0.60 or margin < 0.10``."""
        if self.threshold >= EVERYTHING:
            return "every candidate"
        parts = [f"confidence < {self.threshold:.2f}"] if self.threshold > 0 else []
        parts += [f"margin < {self.margin:.2f}"] if self.margin > 0 else []
        if self.budget is None:
            return " or ".join(parts) or "nothing (routing.threshold and routing.margin are 0)"
        return (" or ".join(parts) or "any candidate") + (
            f", at most {self.budget:.0%} of the texts of a batch, hardest first"
        )

    def is_hard(self, cand: Candidate, threshold: float | None = None) -> bool:
        threshold = self.threshold if threshold is None else threshold
        # margin 0 disables the margin rule (a likely-missed span's margin can be negative)
        return cand.confidence < threshold or (self.margin > 0 and cand.margin < self.margin)

    def select(self, sentences: Sequence[Sequence[Candidate]]) -> list[list[Candidate]]:
        """The hard candidates of every sentence (an empty list = not routed)."""
        threshold = self.threshold
        if self.budget is not None and threshold == 0.0 and self.margin == 0.0:
            threshold = EVERYTHING  # budget alone: every sentence with candidates is eligible
        hard = [[c for c in cands if self.is_hard(c, threshold)] for cands in sentences]
        if self.budget is not None:
            cap = int(self.budget * len(sentences) + 1e-9)
            ranked = sorted(
                (i for i, h in enumerate(hard) if h), key=lambda i: (difficulty(sentences[i]), i)
            )
            keep = set(ranked[:cap])
            hard = [h if i in keep else [] for i, h in enumerate(hard)]
        return hard


def share_threshold(difficulties: Sequence[float], share: float) -> float:
    """The confidence threshold that routes the ``share`` hardest sentences of a sample."""
    ranked = sorted(d for d in difficulties if d < 1.0)
    k = min(int(round(share * len(difficulties))), len(ranked))
    if k == 0:
        return 0.0
    if k == len(ranked):
        return min(1.0, ranked[-1] + 1e-6)
    return (ranked[k - 1] + ranked[k]) / 2


@dataclass(frozen=True)
class CalibrationPoint:
    share: float
    threshold: float
    routed: int
    f1: float


def calibrate(
    difficulties: Sequence[float],
    shares: Sequence[float],
    f1_at: Callable[[float], tuple[float, int]],
    min_gain: float = 0.0,
) -> tuple[CalibrationPoint, list[CalibrationPoint]]:
    """Best point over ``shares`` (plus 0.0). ``f1_at(threshold)`` returns (dev F1, routed).

    A share that routes something must beat routing nothing by ``min_gain`` dev F1: on a small
    dev sample a gain of one or two spans is noise, and acting on it can cost test F1."""
    points = []
    for share in sorted({0.0, *shares}):
        threshold = share_threshold(difficulties, share)
        f1, routed = f1_at(threshold)
        points.append(CalibrationPoint(share, threshold, routed, f1))
    nothing = points[0]
    eligible = [nothing, *(p for p in points[1:] if p.f1 >= nothing.f1 + min_gain)]
    best = max(eligible, key=lambda p: (round(p.f1, 10), -p.routed))
    return best, points
