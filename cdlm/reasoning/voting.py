"""Stage 2, expert voting: N personas score every option of every candidate 1-5 on accuracy,
relevance and domain adaptation, with a reason.

One call per expert and round covers all candidates of the sentence (the schema has one required
field per candidate, and inside it one per option, so the model can neither skip a candidate nor
score a type that was not offered).

Aggregation rule (``aggregate``):
1. An expert's score for an option is the mean of its three scores (1..5).
2. An expert prefers its highest-scored option; ties go to the tagger's own decision, then to
   the option listed first (the tagger's more probable type).
3. The panel's decision is the option with the highest mean score over the experts that
   answered; ties are broken the same way. Its confidence is ``(mean - 1) / 4``.

Rounds: after round 1, the candidates on which the experts' preferences differ go to another
round in which each expert sees the others' latest votes and reasons; agreed candidates keep
their votes. Voting stops at consensus or after ``rounds`` rounds. An expert whose answer could
not be parsed abstains (counted as a fallback); a candidate no expert voted on keeps the tagger's
decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from pydantic import Field, create_model

from cdlm.errors import ConfigError
from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.discovery import Link
from cdlm.reasoning.stage import Output, Samples, Stage, Task, candidate_context, text_field

Score = Literal[1, 2, 3, 4, 5]  # an enum, so the JSON grammar itself rules out 0 or 6


# [accuracy, relevance, domain]: a fixed-length array is a third of the tokens of an object with
# three keys, and generation time is what the small model spends most on.
Scores = tuple[Score, Score, Score]


@lru_cache(maxsize=256)
def vote_schema(options: tuple[tuple[int, tuple[str, ...]], ...], max_reason: int) -> type[Output]:
    """``{"c<id>": {"reason": str, "<type>": [accuracy, relevance, domain], ...}, ...}``."""
    fields = {}
    for cid, types in options:
        per_option = {f"t{j}": (Scores, Field(alias=t)) for j, t in enumerate(types)}
        cand_model = create_model(
            f"Vote{cid}",
            __base__=Output,
            reason=(str, text_field(max_reason)),
            **per_option,  # type: ignore[arg-type]
        )
        fields[f"c{cid}"] = (cand_model, ...)
    return create_model("Votes", __base__=Output, **fields)  # type: ignore[call-overload]


@dataclass
class Ballot:
    """One expert's vote on one candidate."""

    expert: int
    round: int
    scores: dict[str, float]  # option type -> mean score 1..5
    reason: str

    def preference(self, order: list[str]) -> str:
        return max(order, key=lambda t: (self.scores.get(t, 0.0), -order.index(t)))


def aggregate(ballots: list[Ballot], order: list[str]) -> tuple[str, float]:
    """The panel's decision and confidence in [0, 1] (see the module docstring)."""
    means = {t: sum(b.scores.get(t, 1.0) for b in ballots) / len(ballots) for t in order}
    best = max(order, key=lambda t: (means[t], -order.index(t)))
    return best, (means[best] - 1.0) / 4.0


def agreed(ballots: list[Ballot], order: list[str]) -> bool:
    return len({b.preference(order) for b in ballots}) <= 1


@dataclass
class VoteResult:
    decisions: dict[int, tuple[str, float]]  # candidate id -> (type or "none", confidence)
    ballots: dict[int, list[Ballot]]  # candidate id -> every ballot of every round
    rounds_run: int
    consensus: bool
    abstentions: int = 0  # expert calls whose answer could not be parsed
    history: list[dict] = field(default_factory=list)


def personas(task: Task) -> list[str]:
    cfg = task.config
    if cfg.experts > len(cfg.personas):
        raise ConfigError(
            f"reasoning.experts = {cfg.experts} but only {len(cfg.personas)} reasoning.personas"
        )
    return cfg.personas[: cfg.experts]


def _parse(answer: Output, cands: list[Candidate], expert: int, rnd: int) -> dict[int, Ballot]:
    out = {}
    for cand in cands:
        vote = getattr(answer, f"c{cand.id}")
        scores = {t: sum(getattr(vote, f"t{j}")) / 3 for j, t in enumerate(cand.option_types)}
        out[cand.id] = Ballot(expert, rnd, scores, vote.reason)
    return out


def vote_variables(
    task: Task,
    doc: Doc,
    persona: str,
    rnd: int,
    cands: list[Candidate],
    links: list[Link],
    others: list[tuple[Candidate, list[Ballot]]],
) -> dict:
    """The template variables of one expert's voting prompt (``others``: earlier ballots of the
    other experts, per candidate, shown from round 2 on)."""
    return {
        **task.type_context(),
        "sentence": doc.text,
        "persona": persona,
        "round": rnd,
        "candidates": candidate_context(cands),
        "links": [{"cause": ln.cause, "effect": ln.effect, "type": ln.type} for ln in links],
        "others": [
            {
                "id": c.id,
                "text": c.text,
                "votes": [
                    {
                        "type": b.preference(c.tie_order),
                        "score": round(max(b.scores.values()), 1),
                        "reason": b.reason,
                    }
                    for b in ballots
                ],
            }
            for c, ballots in others
            if ballots
        ],
    }


def _samples(task: Task, doc: Doc, cands: list[Candidate]) -> Samples:
    """Round 1, and round 2 with another expert's ballot on the first candidate."""
    links = [Link("Chancellor", cands[0].text, cands[0].option_types[0], (0, 1), (0, 13))]
    ballot = Ballot(
        1, 1, {t: 4.0 - k for k, t in enumerate(cands[0].option_types)}, "she led a party"
    )
    round2 = [(cands[0], [ballot])]
    return [
        ("round 1", vote_variables(task, doc, "a linguist", 1, cands, links, [])),
        ("round 2", vote_variables(task, doc, "a linguist", 2, cands, links, round2)),
    ]


VOTE = Stage(
    name="vote",
    template="vote.jinja",
    schema=vote_schema,
    required=frozenset({"sentence", "candidates", "persona"}),
    samples=_samples,
)


def vote(task: Task, doc: Doc, cands: list[Candidate], links: list[Link]) -> VoteResult:
    """Run the panel over ``cands`` (all candidates of one sentence batched per call)."""
    panel = personas(task)
    by_id = {c.id: c for c in cands}
    latest: dict[int, dict[int, Ballot]] = {c.id: {} for c in cands}  # cand -> expert -> ballot
    every: dict[int, list[Ballot]] = {c.id: [] for c in cands}
    pending = list(cands)
    abstentions, rounds_run = 0, 0
    for rnd in range(1, task.config.rounds + 1):
        rounds_run = rnd
        schema = vote_schema(
            tuple((c.id, tuple(c.option_types)) for c in pending), task.config.max_reason_chars
        )
        previous = {cid: dict(b) for cid, b in latest.items()}
        for expert, persona in enumerate(panel):
            others = (
                [
                    (c, [b for e, b in sorted(previous[c.id].items()) if e != expert])
                    for c in pending
                ]
                if rnd > 1
                else []
            )
            variables = vote_variables(task, doc, persona, rnd, pending, links, others)
            answer = task.ask(VOTE, variables, schema)
            if answer is None:
                abstentions += 1
                continue
            for cid, ballot in _parse(answer, pending, expert, rnd).items():
                latest[cid][expert] = ballot
                every[cid].append(ballot)
        pending = [
            by_id[cid]
            for cid in (c.id for c in pending)
            if latest[cid] and not agreed(list(latest[cid].values()), by_id[cid].tie_order)
        ]
        if not pending:
            break
    decisions = {
        cid: aggregate(list(b.values()), by_id[cid].tie_order) for cid, b in latest.items() if b
    }
    consensus = all(
        agreed(list(b.values()), by_id[cid].tie_order) for cid, b in latest.items() if b
    )
    return VoteResult(decisions, every, rounds_run, consensus, abstentions)
