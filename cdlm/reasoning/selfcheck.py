"""Stage 3, counterfactual self-check: build the alternative answer and keep the voted one unless
the alternative contradicts it.

Two counterfactuals (``reasoning.selfcheck``):
- ``placeholder``: the sentence with each mention replaced by a neutral placeholder
  (``[ENTITY 0]``...), so the model judges from context alone which option fits;
- ``runner_up``: the sentence as is, the voted type against the runner-up.

The model answers per candidate ``context_type`` (one of the candidate's options) and a verdict
``consistent`` or ``contradiction``. Revision rule (``revise``): the voted type changes only when
the verdict is ``contradiction`` AND ``context_type`` differs from the voted type; a
``contradiction`` that names the voted type, or a ``consistent`` verdict naming another type, keeps
the vote — the check guards against hallucination, it is not a second vote.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from pydantic import create_model

from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.stage import Output, Samples, Stage, Task, literal, text_field


@lru_cache(maxsize=256)
def selfcheck_schema(
    options: tuple[tuple[int, tuple[str, ...]], ...], max_reason: int
) -> type[Output]:
    """``{"c<id>": {"context_type", "verdict", "reason"}, ...}``."""
    fields = {}
    for cid, types in options:
        fields[f"c{cid}"] = (
            create_model(
                f"Check{cid}",
                __base__=Output,
                context_type=(literal(types), ...),
                verdict=(literal(("consistent", "contradiction")), ...),
                reason=(str, text_field(max_reason)),
            ),
            ...,
        )
    return create_model("SelfCheck", __base__=Output, **fields)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Verdict:
    voted: str
    context_type: str
    verdict: str  # "consistent" | "contradiction"
    reason: str
    final: str

    @property
    def revised(self) -> bool:
        return self.final != self.voted


def revise(voted: str, context_type: str, verdict: str) -> str:
    """The final type: changes only on a contradiction that names another type."""
    if verdict == "contradiction" and context_type != voted:
        return context_type
    return voted


def counterfactual_text(doc: Doc, cands: list[Candidate], placeholder: str) -> str:
    """The sentence with every candidate mention replaced by its numbered placeholder."""
    text = doc.text
    for cand in sorted(cands, key=lambda c: -c.char_start):
        text = (
            text[: cand.char_start]
            + placeholder.replace("{id}", str(cand.id))
            + text[cand.char_end :]
        )
    return text


def runner_up(cand: Candidate, voted: str) -> str:
    return next((t for t in cand.option_types if t != voted), voted)


def selfcheck_variables(
    task: Task, doc: Doc, cands: list[Candidate], voted: dict[int, str]
) -> dict:
    """The template variables of the self-check prompt."""
    mode = task.config.selfcheck
    placeholder = task.config.placeholder
    checks = [
        {
            "id": c.id,
            "text": c.text,
            "placeholder": placeholder.replace("{id}", str(c.id)),
            "voted": voted[c.id],
            "runner_up": runner_up(c, voted[c.id]),
            "options": c.option_types,
        }
        for c in cands
    ]
    return {
        **task.type_context(),
        "sentence": doc.text,
        "counterfactual": counterfactual_text(doc, cands, placeholder),
        "mode": mode,
        "checks": checks,
    }


def _samples(task: Task, doc: Doc, cands: list[Candidate]) -> Samples:
    """Both counterfactual modes, every candidate voted its first option."""
    voted = {c.id: c.option_types[0] for c in cands}
    cases = []
    for mode in ("placeholder", "runner_up"):
        moded = replace(task, config=task.config.model_copy(update={"selfcheck": mode}))
        cases.append((mode, selfcheck_variables(moded, doc, cands, voted)))
    return cases


SELFCHECK = Stage(
    name="selfcheck",
    template="selfcheck.jinja",
    schema=selfcheck_schema,
    required=frozenset({"sentence", "checks"}),
    samples=_samples,
)


def selfcheck(
    task: Task, doc: Doc, cands: list[Candidate], voted: dict[int, str]
) -> dict[int, Verdict] | None:
    """Check the voted types of ``cands``; ``None`` when the answer was unusable (keep votes)."""
    schema = selfcheck_schema(
        tuple((c.id, tuple(c.option_types)) for c in cands), task.config.max_reason_chars
    )
    answer = task.ask(SELFCHECK, selfcheck_variables(task, doc, cands, voted), schema)
    if answer is None:
        return None
    out = {}
    for c in cands:
        got = getattr(answer, f"c{c.id}")
        out[c.id] = Verdict(
            voted[c.id],
            got.context_type,
            got.verdict,
            got.reason,
            revise(voted[c.id], got.context_type, got.verdict),
        )
    return out
