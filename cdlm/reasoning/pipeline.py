"""The reasoning pipeline for one sentence: discovery -> expert voting -> self-check, merged with
the tagger's easy decisions.

- Tagger mode: the router picks the hard candidates; each stage sees all of them in one call
  (per expert for voting). Easy candidates keep the tagger's answer (``source="tagger"``); the
  hard ones get the LLM's (``source="llm"``), unless every expert's answer was unusable, in which
  case the tagger's answer stays and the fallback is counted.
- LLM-only mode (no checkpoint): discovery proposes the mentions; the grounded ones become the
  candidates for voting and self-check.

Every entity is a span of the input: candidates come from the tagger's words or from grounded
discovery effects snapped to whole words, so an invented span cannot reach the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdlm.data.spans import Entity
from cdlm.reasoning.candidates import NONE, Candidate, Doc
from cdlm.reasoning.discovery import discover, proposed_candidates
from cdlm.reasoning.selfcheck import selfcheck
from cdlm.reasoning.stage import Task
from cdlm.reasoning.voting import vote


@dataclass
class Outcome:
    """What happened to one sentence."""

    entities: list[Entity]
    routed: bool = False
    asked: int = 0  # candidates sent to the LLM
    fallbacks: int = 0  # stage calls whose answer was unusable (the tagger's answer was kept)
    dropped: int = 0  # LLM phrases/spans not found in the sentence, dropped
    # (candidate, tagger's type or None, final type or None) for every candidate the LLM decided
    changes: list[tuple[Candidate, str | None, str | None]] = field(default_factory=list)
    trace: dict[str, Any] | None = None


def _entity(
    doc: Doc,
    cand: Candidate,
    label: str,
    score: float,
    source: str,
    explanation: dict[str, Any] | None = None,
) -> Entity:
    assert doc.text[cand.char_start : cand.char_end] == cand.text
    return Entity(
        cand.char_start,
        cand.char_end,
        cand.text,
        label,
        score,
        source,  # type: ignore[arg-type]
        cand.start,
        cand.end,
        explanation,
    )


def tagger_entities(doc: Doc, cands: list[Candidate]) -> list[Entity]:
    """The tagger's own answer: its spans, nothing from the likely-missed candidates."""
    return [
        _entity(doc, c, c.tagger_type, c.confidence, "tagger")
        for c in cands
        if c.kind == "span" and c.tagger_type
    ]


def reason(task: Task, doc: Doc, cands: list[Candidate] | None) -> Outcome:
    """Run the three stages on ``cands`` (``None`` = LLM-only: discovery proposes them).

    Returns only the entities of the asked candidates; ``route`` merges them with the rest."""
    fallbacks = 0
    disc = discover(task, doc, cands)
    fallbacks += int(not disc.ok)
    if cands is None:
        cands = proposed_candidates(doc, disc.links, task.config.top_k)
    trace: dict[str, Any] = {
        "links": [{"cause": ln.cause, "effect": ln.effect, "type": ln.type} for ln in disc.links],
    }
    outcome = Outcome([], routed=True, asked=len(cands), dropped=disc.dropped, trace=trace)
    if not cands:
        outcome.fallbacks = fallbacks
        return outcome
    voted = vote(task, doc, cands, disc.links)
    fallbacks += voted.abstentions
    trace.update(rounds=voted.rounds_run, consensus=voted.consensus)
    decided = [c for c in cands if c.id in voted.decisions]
    verdicts = None
    if decided and task.config.selfcheck != "off":
        verdicts = selfcheck(task, doc, decided, {c.id: voted.decisions[c.id][0] for c in decided})
        fallbacks += int(verdicts is None)
    for cand in cands:
        links = [
            {"cause": ln.cause, "type": ln.type}
            for ln in disc.links
            if ln.effect_span[0] < cand.char_end and ln.effect_span[1] > cand.char_start
        ]
        explanation: dict[str, Any] = {"links": links}
        if cand.id not in voted.decisions:  # no expert answered: keep the tagger's decision
            if cand.kind == "span" and cand.tagger_type:
                explanation["fallback"] = "no usable vote; tagger kept"
                outcome.entities.append(
                    _entity(doc, cand, cand.tagger_type, cand.confidence, "tagger", explanation)
                )
            continue
        label, score = voted.decisions[cand.id]
        explanation["votes"] = [
            {"expert": b.expert, "round": b.round, "scores": b.scores, "reason": b.reason}
            for b in voted.ballots[cand.id]
        ]
        if verdicts is not None:
            v = verdicts[cand.id]
            explanation["selfcheck"] = {
                "context_type": v.context_type,
                "verdict": v.verdict,
                "reason": v.reason,
                "revised": v.revised,
            }
            label = v.final
        outcome.changes.append((cand, cand.tagger_type, None if label == NONE else label))
        if label != NONE:
            outcome.entities.append(_entity(doc, cand, label, score, "llm", explanation))
    outcome.fallbacks = fallbacks
    return outcome


def route(task: Task | None, doc: Doc, cands: list[Candidate], hard: list[Candidate]) -> Outcome:
    """Tagger answer for the easy candidates, LLM answer for the ``hard`` ones."""
    if not hard or task is None:
        return Outcome(tagger_entities(doc, cands))
    hard_ids = {c.id for c in hard}
    easy = tagger_entities(doc, [c for c in cands if c.id not in hard_ids])
    outcome = reason(task, doc, hard)
    outcome.entities = sorted(easy + outcome.entities, key=lambda e: e.start)
    return outcome
