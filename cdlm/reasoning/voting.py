"""Stage 2, expert voting: N personas vote on every candidate's options.

Two forms of vote (``reasoning.vote``):

- ``choice`` (default): each expert answers one letter per candidate, ``{"c0":"A","c1":"D"}``,
  where A, B, ... are the candidate's options in order (the tagger's top types, most probable
  first, then "none"). Where the backend gives log-probabilities (``reasoning.logprobs``) the
  ballot is the distribution over the offered letters at the answer position, renormalised
  (llama.cpp reads it in one pass without generating); otherwise the chosen letter counts 1.
- ``scores``: the paper's vote: every option scored ``[accuracy, relevance, domain]`` from 1 to
  5; the ballot is each option's mean score mapped to [0, 1] by ``(mean - 1) / 4``.

One call per expert and round covers all the candidates it is asked about (the schema has one
required field per candidate, so the model can neither skip a candidate nor pick an option that
was not offered). With ``reasoning.panel_call = "joint"`` (choice votes) the experts asked about
the same candidates answer in one call instead: the prompt lists them, the answer has one letter
per expert and candidate (``{"e2c0":"A","e3c0":"B"}``), each scored at its position, so a later
expert's letters are read after the earlier experts' (as in a panel that speaks in turn).
With reasons (``Task.reasons``) each candidate also gets a short reason; in a choice vote it
comes after all the letters, so asking for reasons does not change the decision.

Ballot of a choice vote (``weigh``): with ``reasoning.calibrate`` each letter's probability is
divided by its probability in a content-free vote of the same expert over as many options (the
sentence and the mention replaced by "N/A", asked once per run: "calibrate before use", Zhao et
al. 2021), which removes a taste for a letter position; with ``reasoning.tagger_prior`` it is
multiplied by the tagger's probability of the option. Renormalised, the ballot is then a
posterior ``p(o) ~ p_tagger(o) * p_llm(o) / p_prior(o)``: an LLM that reads the sentence no
better than its content-free prompt leaves the tagger's decision, a confident one overrides it.

Aggregation rule (``aggregate``, both forms):
1. A ballot gives each of a candidate's options a value in [0, 1].
2. An expert prefers its highest-valued option; ties go to the tagger's own decision, then to
   the option listed first (the tagger's more probable type).
3. The panel's decision is the option with the highest mean value over the experts that voted
   on the candidate; ties are broken the same way. Its confidence is that mean.

Rules that save calls (config, each documented at its field):
- Panel size (``reasoning.solo_confidence``): a candidate whose tagger top probability is at
  least this is voted on by the first expert alone; the other experts are asked only about the
  remaining candidates, and not at all when none remain.
- Panel confidence (``reasoning.panel_confidence``): in round 1 the first expert votes first;
  the others are asked only about the candidates where its ballot proposes a change (prefers
  another option than the tagger's decision) or values its preference below this. Where the
  first expert confirms the tagger there is nothing for a panel to settle.
- Joint panel (``reasoning.panel_call``): the experts asked about the same candidates in the
  same wave answer in one call (choice votes), so a panel costs one call, not one per expert.
- Rounds (``reasoning.rounds``, 1 by default): after a round, only the candidates whose experts
  prefer different options (a split vote) go to the next round, in which each expert sees the
  others' latest votes; the others keep their votes. A candidate with one voter is never split.
  Voting stops when no vote is split or after ``rounds`` rounds.

The calls of a wave are sent together (:meth:`Task.ask_many`, concurrent where the backend
allows). A call whose answer could not be parsed abstains (counted as a fallback); a candidate
no expert voted on keeps the tagger's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, create_model

from cdlm.errors import ConfigError
from cdlm.llm.base import LLMResult
from cdlm.llm.choice import LETTERS, choice_layout, one_hot
from cdlm.reasoning.candidates import NONE, Candidate, Doc, Option
from cdlm.reasoning.discovery import Link
from cdlm.reasoning.stage import (
    Output,
    Samples,
    Stage,
    Task,
    candidate_context,
    literal,
    text_field,
)

Score = Literal[1, 2, 3, 4, 5]  # an enum, so the JSON grammar itself rules out 0 or 6


# [accuracy, relevance, domain]: a fixed-length array is a third of the tokens of an object with
# three keys, and generation time is what the small model spends most on.
Scores = tuple[Score, Score, Score]

# (candidate id, option types) of every candidate a call asks about
Menu = tuple[tuple[int, tuple[str, ...]], ...]


class ChoiceAnswer(Output):
    """Base of the choice-vote output models (built per call by :func:`choice_schema`)."""


def expert_key(expert: int) -> str:
    """How a joint panel's prompt and answer name an expert: ``e1`` for the first."""
    return f"e{expert + 1}"


def answer_key(field: str, cid: int, expert: int | None = None) -> str:
    """The JSON key of a candidate's ``field`` ("c" letter, "r" reason): ``c<id>`` in one
    expert's answer, ``e<expert + 1>c<id>`` in a joint panel answer."""
    return f"{field}{cid}" if expert is None else f"{expert_key(expert)}{field}{cid}"


@lru_cache(maxsize=256)
def choice_schema(
    options: Menu, max_reason: int | None = None, experts: tuple[int, ...] = ()
) -> type[Output]:
    """``{"c<id>": "A"|"B"|..., ...}`` (one letter per offered option), then with reasons
    ``"r<id>": str`` for every candidate; for a joint panel (``experts``) the same per expert,
    keyed ``e<expert + 1>c<id>``, every letter before any reason."""
    who: tuple[int | None, ...] = experts or (None,)
    fields: dict[str, Any] = {
        answer_key("c", cid, e): (literal(LETTERS[: len(types)]), ...)
        for e in who
        for cid, types in options
    }
    if max_reason is not None:
        fields |= {
            answer_key("r", cid, e): (str, text_field(max_reason))
            for e in who
            for cid, _ in options
        }
    return create_model("Choices", __base__=ChoiceAnswer, **fields)


@lru_cache(maxsize=256)
def scores_schema(options: Menu, max_reason: int | None = None) -> type[Output]:
    """``{"c<id>": {["reason": str,] "<type>": [accuracy, relevance, domain], ...}, ...}``."""
    fields = {}
    for cid, types in options:
        per_option: dict[str, Any] = {
            f"t{j}": (Scores, Field(alias=t)) for j, t in enumerate(types)
        }
        if max_reason is not None:
            per_option = {"reason": (str, text_field(max_reason)), **per_option}
        fields[f"c{cid}"] = (create_model(f"Vote{cid}", __base__=Output, **per_option), ...)
    return create_model("Votes", __base__=Output, **fields)  # type: ignore[call-overload]


def vote_schema(task: Task, cands: list[Candidate], experts: tuple[int, ...] = ()) -> type[Output]:
    """The output model of a vote on ``cands`` in the configured form (``experts``: the
    experts of a joint panel call, choice votes only)."""
    menu = tuple((c.id, tuple(c.option_types)) for c in cands)
    if task.config.vote == "choice":
        return choice_schema(menu, task.max_reason, experts)
    return scores_schema(menu, task.max_reason)


@dataclass
class Ballot:
    """One expert's vote on one candidate."""

    expert: int
    round: int
    scores: dict[str, float]  # option type -> value in [0, 1] (a probability in a choice vote)
    reason: str = ""

    def preference(self, order: list[str]) -> str:
        return max(order, key=lambda t: (self.scores.get(t, 0.0), -order.index(t)))


def aggregate(ballots: list[Ballot], order: list[str]) -> tuple[str, float]:
    """The panel's decision and confidence in [0, 1] (see the module docstring)."""
    means = {t: sum(b.scores.get(t, 0.0) for b in ballots) / len(ballots) for t in order}
    best = max(order, key=lambda t: (means[t], -order.index(t)))
    return best, means[best]


def agreed(ballots: list[Ballot], order: list[str]) -> bool:
    return len({b.preference(order) for b in ballots}) <= 1


@dataclass
class VoteResult:
    decisions: dict[int, tuple[str, float]]  # candidate id -> (type or "none", confidence)
    ballots: dict[int, list[Ballot]]  # candidate id -> every ballot of every round
    rounds_run: int
    consensus: bool
    abstentions: int = 0  # expert calls whose answer could not be parsed
    calls: int = 0  # expert calls asked (answered or not)
    history: list[dict] = field(default_factory=list)


def personas(task: Task) -> list[str]:
    cfg = task.config
    if cfg.experts > len(cfg.personas):
        raise ConfigError(
            f"reasoning.experts = {cfg.experts} but only {len(cfg.personas)} reasoning.personas"
        )
    return cfg.personas[: cfg.experts]


def solo(task: Task, cand: Candidate) -> bool:
    """Whether the panel-size rule leaves ``cand`` to the first expert alone."""
    bar = task.config.solo_confidence
    return bar is not None and cand.top_prob >= bar


CONTENT_FREE = "N/A"  # the sentence and mention of the calibration vote


def content_free(task: Task, k: int) -> tuple[Doc, Candidate] | None:
    """The calibration vote's sentence and candidate over ``k`` options (the domain's first
    types then "none", equal tagger probabilities); None when the domain has too few types."""
    types = [t for t in task.types if t != NONE][: k - 1] + [NONE]
    if len(types) < k:
        return None
    cand = Candidate(
        0, 0, 1, CONTENT_FREE, 0, len(CONTENT_FREE), [Option(t, 1 / k) for t in types],
        "span", None, 1 / k, 0.0,
    )  # fmt: skip
    return Doc.from_tokens([CONTENT_FREE]), cand


def letter_prior(task: Task, expert: int, k: int) -> dict[str, float] | None:
    """The expert's letter distribution over ``k`` options in the content-free vote, asked
    once per task (stage ``vote_prior``) and kept. None when the backend gives no
    log-probabilities or the answer failed."""
    key = ("letter_prior", expert, k)
    with task.lock:  # held while asking: sentences side by side ask it once between them
        if key not in task.memo:
            prior = None
            free = content_free(task, k)
            if free is not None:
                doc, cand = free
                variables = vote_variables(task, doc, personas(task)[expert], 1, [cand], [], [])
                schema = choice_schema(((0, tuple(cand.option_types)),))
                (result,) = task.ask_many(VOTE_PRIOR, [(variables, schema)], logprobs=True)
                prior = result.probs["c0"] if result is not None and result.probs else None
            task.memo[key] = prior
        return task.memo[key]


def weigh(
    cand: Candidate,
    llm: dict[str, float],
    prior: dict[str, float] | None,
    tagger_prior: bool,
    floor: float,
) -> dict[str, float]:
    """A candidate's ballot from the letter probabilities ``llm`` (see the module docstring):
    divided by ``prior`` where given, times the tagger's option probabilities with
    ``tagger_prior``, renormalised; unchanged when neither applies."""
    if prior is None and not tagger_prior:
        return {t: float(llm[LETTERS[j]]) for j, t in enumerate(cand.option_types)}
    values = {}
    for j, option in enumerate(cand.options):
        value = max(llm[LETTERS[j]], floor)
        if prior is not None:
            value /= max(prior[LETTERS[j]], floor)
        if tagger_prior:
            value *= max(option.prob, floor)
        values[option.type] = value
    total = sum(values.values())
    return {t: v / total for t, v in values.items()}


def needs_panel(task: Task, cand: Candidate, latest: dict[int, dict[int, Ballot]]) -> bool:
    """Whether experts after the first vote on ``cand`` in round 1: not when the tagger is sure
    (``solo_confidence``), nor when the first expert confirms the tagger's decision with at
    least ``panel_confidence``."""
    if solo(task, cand):
        return False
    first = latest[cand.id].get(0)
    bar = task.config.panel_confidence
    if first is None or bar is None:
        return True
    order = cand.tie_order  # the tagger's decision first
    return first.preference(order) != order[0] or max(first.scores.values()) < bar


def ballots_of(
    result: LLMResult[Any],
    cands: list[Candidate],
    expert: int,
    rnd: int,
    task: Task | None = None,
    joint: bool = False,
) -> dict[int, Ballot]:
    """Each candidate's ballot from one expert's answer (either form of vote; ``joint``: this
    expert's fields of a joint panel answer); a choice ballot is weighed by ``task``'s rules
    (calibration, tagger prior), as it is without a task. The calibration prior is the
    expert's own content-free vote, asked in the one-expert form either way."""
    answer = result.value
    out = {}
    if isinstance(answer, ChoiceAnswer):
        probs = result.probs or one_hot(answer, choice_layout(type(answer)))
        calibrate = task is not None and task.config.calibrate and result.probs is not None
        tagger = task is not None and task.config.tagger_prior
        floor = task.config.letter_floor if task is not None else 0.0
        who = expert if joint else None
        for cand in cands:
            prior = letter_prior(task, expert, len(cand.options)) if calibrate else None
            scores = weigh(cand, probs[answer_key("c", cand.id, who)], prior, tagger, floor)
            reason = getattr(answer, answer_key("r", cand.id, who), "")
            out[cand.id] = Ballot(expert, rnd, scores, reason)
        return out
    for cand in cands:
        vote = getattr(answer, f"c{cand.id}")
        scores = {
            t: (sum(getattr(vote, f"t{j}")) / 3 - 1) / 4 for j, t in enumerate(cand.option_types)
        }
        out[cand.id] = Ballot(expert, rnd, scores, getattr(vote, "reason", ""))
    return out


def vote_variables(
    task: Task,
    doc: Doc,
    persona: str,
    rnd: int,
    cands: list[Candidate],
    links: list[Link],
    others: list[tuple[Candidate, list[Ballot]]],
    panel: list[dict[str, str]] | None = None,
) -> dict:
    """The template variables of one expert's voting prompt (``others``: earlier ballots of the
    other experts, per candidate, shown from round 2 on; ``panel``: the experts of a joint call,
    ``[{"key": "e2", "persona": ...}]``, instead of ``persona``)."""
    return {
        **task.type_context(),
        "sentence": doc.text,
        "persona": persona,
        "panel": panel or [],
        "round": rnd,
        "vote": task.config.vote,
        "reasons": task.reasons,
        "candidates": candidate_context(cands),
        "links": [{"cause": ln.cause, "effect": ln.effect, "type": ln.type} for ln in links],
        "others": [
            {
                "id": c.id,
                "text": c.text,
                "votes": [
                    {
                        "type": b.preference(c.tie_order),
                        "confidence": round(max(b.scores.values()), 2),
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
    """Round 1 and round 2 (another expert's ballot on the first candidate) of both forms of
    vote; round 1 without the tagger's probabilities, round 2 with them and with reasons."""
    links = [Link("Chancellor", cands[0].text, cands[0].option_types[0], (0, 1), (0, 13))]
    ballot = Ballot(
        1, 1, {t: 0.75 - k / 4 for k, t in enumerate(cands[0].option_types)}, "she led a party"
    )
    round2 = [(cands[0], [ballot])]
    cases = []
    for form in ("choice", "scores"):
        config = task.config.model_copy(update={"vote": form, "show_probs": False})
        plain = replace(task, config=config, reasons=False)
        reasons = replace(
            plain, config=config.model_copy(update={"show_probs": True}), reasons=True
        )
        cases += [
            (f"{form} round 1", vote_variables(plain, doc, "a linguist", 1, cands, links, [])),
            (
                f"{form} round 2 with reasons",
                vote_variables(reasons, doc, "a linguist", 2, cands, links, round2),
            ),
        ]
    members = [{"key": "e2", "persona": "a domain expert"}, {"key": "e3", "persona": "a sceptic"}]
    joint = replace(task, config=task.config.model_copy(update={"vote": "choice"}))
    cases.append(
        ("choice joint panel", vote_variables(joint, doc, "", 1, cands, links, [], members))
    )
    return cases


VOTE = Stage(
    name="vote",
    template="vote.jinja",
    schema=vote_schema,
    required=frozenset({"sentence", "candidates", "persona"}),
    samples=_samples,
)


def _prior_samples(task: Task, doc: Doc, cands: list[Candidate]) -> Samples:
    """The content-free vote over three options."""
    free = content_free(task, 3)
    if free is None:
        return []
    free_doc, cand = free
    plain = replace(task, config=task.config.model_copy(update={"vote": "choice"}))
    return [("content-free", vote_variables(plain, free_doc, "a linguist", 1, [cand], [], []))]


# The calibration vote (``reasoning.calibrate``): the vote's own template, its usage counted apart.
VOTE_PRIOR = Stage(
    name="vote_prior",
    template="vote.jinja",
    schema=vote_schema,
    required=VOTE.required,
    samples=_prior_samples,
)


def _others(
    expert: int | None, mine: list[Candidate], previous: dict[int, dict[int, Ballot]], rnd: int
) -> list[tuple[Candidate, list[Ballot]]]:
    """The other experts' ballots of the previous round on ``mine`` (none in round 1); every
    expert's for a joint call (``expert`` None)."""
    if rnd == 1:
        return []
    return [(c, [b for e, b in sorted(previous[c.id].items()) if e != expert]) for c in mine]


Call = tuple[tuple[int, ...], list[Candidate]]  # (experts answering together, their candidates)


def calls_of(asked: list[tuple[int, list[Candidate]]], joint: bool) -> list[Call]:
    """The calls for ``(expert, candidates)`` pairs: one per expert, or with ``joint`` one per
    run of consecutive experts asked about the same candidates."""
    calls: list[Call] = []
    for expert, mine in asked:
        if joint and calls and [c.id for c in calls[-1][1]] == [c.id for c in mine]:
            calls[-1] = ((*calls[-1][0], expert), mine)
        else:
            calls.append(((expert,), mine))
    return calls


def call_job(
    task: Task,
    doc: Doc,
    call: Call,
    rnd: int,
    links: list[Link],
    previous: dict[int, dict[int, Ballot]],
) -> tuple[dict, type[Output]]:
    """The (variables, schema) of one call: one expert's prompt, or a joint panel's."""
    experts, mine = call
    panel = personas(task)
    if len(experts) == 1:  # one expert: its persona, the one-expert keys
        who, persona, members, joint = experts[0], panel[experts[0]], None, ()
    else:  # a joint panel: every member listed, shown every expert's earlier ballots
        who, persona, joint = None, "", experts
        members = [{"key": expert_key(e), "persona": panel[e]} for e in experts]
    others = _others(who, mine, previous, rnd)
    variables = vote_variables(task, doc, persona, rnd, mine, links, others, members)
    return variables, vote_schema(task, mine, joint)


def vote(task: Task, doc: Doc, cands: list[Candidate], links: list[Link]) -> VoteResult:
    """Run the panel over ``cands`` (see the module docstring for the rules)."""
    panel = personas(task)
    by_id = {c.id: c for c in cands}
    latest: dict[int, dict[int, Ballot]] = {c.id: {} for c in cands}  # cand -> expert -> ballot
    every: dict[int, list[Ballot]] = {c.id: [] for c in cands}
    pending = list(cands)
    abstentions = rounds_run = calls = 0
    logprobs = task.config.vote == "choice" and task.config.logprobs
    joint = task.config.vote == "choice" and task.config.panel_call == "joint"
    first_wave = task.config.panel_confidence is not None and len(panel) > 1
    for rnd in range(1, task.config.rounds + 1):
        rounds_run = rnd
        previous = {cid: dict(b) for cid, b in latest.items()}
        everyone = list(range(len(panel)))
        waves = [[0], everyone[1:]] if rnd == 1 and first_wave else [everyone]
        for wave in waves:
            # Round 1: the first expert gets every candidate, the others those needing a panel.
            rest = pending if rnd > 1 else [c for c in pending if needs_panel(task, c, latest)]
            asked = [(e, pending if e == 0 else rest) for e in wave]
            wave_calls = calls_of([(e, mine) for e, mine in asked if mine], joint)
            jobs = [call_job(task, doc, call, rnd, links, previous) for call in wave_calls]
            calls += len(jobs)
            results = task.ask_many(VOTE, jobs, logprobs=logprobs)
            for (experts, mine), result in zip(wave_calls, results, strict=True):
                if result is None:
                    abstentions += 1
                    continue
                for expert in experts:
                    ballots = ballots_of(result, mine, expert, rnd, task, len(experts) > 1)
                    for cid, ballot in ballots.items():
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
    return VoteResult(decisions, every, rounds_run, consensus, abstentions, calls)
