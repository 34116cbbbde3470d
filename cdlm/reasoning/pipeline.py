"""The reasoning pipeline for one sentence: discovery -> expert voting -> self-check, merged with
the tagger's easy decisions.

- Tagger mode: the router picks the hard candidates; each stage sees all of them in one call
  (per expert for voting). Easy candidates keep the tagger's answer (``source="tagger"``); the
  hard ones get the LLM's (``source="llm"``), unless every expert's answer was unusable, in which
  case the tagger's answer stays and the fallback is counted.
- LLM-only mode (no checkpoint): discovery proposes the mentions; the grounded ones become the
  candidates for voting and self-check.
- Discovery rule (``reasoning.discovery_when``): ``"unsure"`` gathers causal evidence only for
  sentences with a candidate the tagger is unsure of (top probability below
  ``reasoning.discovery_confidence``); ``"always"`` for every routed sentence. LLM-only mode
  always runs it.
- Self-check rule (``reasoning.selfcheck_when``): ``"changed"`` checks only the candidates whose
  voted type differs from the tagger's decision ("none" for a likely-missed span); where vote
  and tagger agree there is nothing to guard against. ``"always"`` checks every decided one.
- Sentences are independent: :func:`route_many` runs a batch of them side by side, up to
  ``llm.concurrency`` at once (serial for llama.cpp), with the same outcomes in the same order.

Every entity is a span of the input: candidates come from the tagger's words or from grounded
discovery effects snapped to whole words, so an invented span cannot reach the output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdlm.data.spans import Entity
from cdlm.reasoning.candidates import NONE, Candidate, Doc
from cdlm.reasoning.discovery import DiscoveryResult, discover, proposed_candidates
from cdlm.reasoning.selfcheck import selfcheck
from cdlm.reasoning.stage import Task
from cdlm.reasoning.voting import VoteResult, vote


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
    skip = cands is not None and task.config.discovery_when == "unsure"
    bar = task.config.discovery_confidence
    if skip and all(c.top_prob >= bar for c in cands or []):
        disc = DiscoveryResult([], 0, True)  # the discovery rule: the tagger is sure
    else:
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
    checked = [c for c in cands if c.id in voted.decisions and needs_check(task, c, voted)]
    verdicts = None
    if checked and task.config.selfcheck != "off":
        verdicts = selfcheck(task, doc, checked, {c.id: voted.decisions[c.id][0] for c in checked})
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
        if verdicts is not None and cand.id in verdicts:
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


def needs_check(task: Task, cand: Candidate, voted: VoteResult) -> bool:
    """The self-check rule (module docstring): a vote that changed the tagger's decision."""
    if task.config.selfcheck_when == "always":
        return True
    return voted.decisions[cand.id][0] != (cand.tagger_type or NONE)


def route(task: Task | None, doc: Doc, cands: list[Candidate], hard: list[Candidate]) -> Outcome:
    """Tagger answer for the easy candidates, LLM answer for the ``hard`` ones."""
    if not hard or task is None:
        return Outcome(tagger_entities(doc, cands))
    hard_ids = {c.id for c in hard}
    easy = tagger_entities(doc, [c for c in cands if c.id not in hard_ids])
    outcome = reason(task, doc, hard)
    outcome.entities = sorted(easy + outcome.entities, key=lambda e: e.start)
    return outcome


def route_many(
    task: Task | None, batch: Sequence[tuple[Doc, list[Candidate], list[Candidate]]]
) -> Iterator[Outcome]:
    """:func:`route` over ``(doc, candidates, hard candidates)`` of independent sentences, up to
    the backend's concurrency at once; outcomes yielded in input order."""
    if task is None:
        return (route(None, doc, cands, hard) for doc, cands, hard in batch)
    return task.map(lambda item: route(task, *item), batch)
