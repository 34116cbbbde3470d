"""What every LLM stage shares: the :class:`Stage` description the registry holds
(:mod:`cdlm.reasoning.stages`), the task (domain, types, config), one guarded call, and the
schema helpers that keep structured output bounded.

Bounded schemas matter: under a JSON grammar a small model that may write an unbounded array or
string can loop until ``max_tokens``; every list and string in an output model has a maximum.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cdlm.config import LLMConfig, ReasoningConfig
from cdlm.errors import ContextOverflowError
from cdlm.llm.base import LLMBackend, LLMOutputError, Usage
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.templates import PromptSet

T = TypeVar("T", bound=BaseModel)
logger = logging.getLogger(__name__)


class Output(BaseModel):
    """Base of the stage output models: unknown keys are an error, aliases accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def text_field(max_chars: int) -> Any:
    """A bounded free-text field without quotes, backslashes or control characters.

    Written as a pattern rather than ``max_length`` because llama-cpp-python's JSON-schema
    grammar lets a plain string contain raw newlines (invalid JSON, a wasted answer); the
    character class keeps the grammar and pydantic in agreement."""
    return Field(pattern=rf'^[^"\\\x00-\x1f]{{0,{max_chars}}}$', max_length=max_chars)


def literal(values: list[str] | tuple[str, ...]) -> Any:
    """``Literal[v1, v2, ...]`` built at run time (the JSON schema becomes an enum/const)."""
    return Literal[tuple(dict.fromkeys(values))]  # type: ignore[valid-type]


# (case name, template variables) pairs that `cdlm prompts check` renders for a stage.
Samples = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Stage:
    """One LLM stage as the registry knows it: what it is called (the key of
    ``llm.stage_max_tokens`` and of the usage log), which template it renders, how its output
    schema is built, which variables its template must use, and sample variables for every
    branch of the template (built by the stage's own variables function, so a template that
    passes ``cdlm prompts check`` gets exactly these names at run time)."""

    name: str
    template: str  # file name in the prompts folder
    schema: Callable[..., type[BaseModel]]  # the output model builder (arguments per stage)
    required: frozenset[str]  # variables the template must use (e.g. the sentence)
    samples: Callable[[Task, Doc, list[Candidate]], Samples]

    def max_tokens(self, llm: LLMConfig) -> int:
        """This stage's answer budget: ``llm.stage_max_tokens[name]``, else ``llm.max_tokens``."""
        return llm.answer_budget(self.name)


@dataclass
class Task:
    """One reasoning job: the backend, the prompts, the domain's types and the config."""

    backend: LLMBackend
    prompts: PromptSet
    config: ReasoningConfig
    domain: str | None
    types: list[str]
    log: UsageLog
    warned_overflow: bool = field(default=False, repr=False)

    def type_context(self) -> dict[str, Any]:
        """Template variables every stage gets: domain name and the types with descriptions."""
        return {
            "domain": self.prompts.domain_name(self.domain),
            "types": self.prompts.labels(self.domain, self.types),
        }

    def ask(self, stage: Stage, variables: dict[str, Any], schema: type[T]) -> T | None:
        """Render, call, account. ``None`` when the answer could not be parsed after the
        backend's retries: the caller falls back to the tagger and the fallback is counted."""
        messages = self.prompts.render(stage.template, variables)
        name = stage.name
        try:
            result = self.backend.complete(messages, schema, stage=name)
        except ContextOverflowError as exc:
            # One long sentence must not stop a run: keep the tagger's answer, count it, and
            # say once how to make room.
            self.log.add_fallback(name, overflow=True)
            if not self.warned_overflow:
                self.warned_overflow = True
                logger.warning("warning: %s (stage %s; the tagger's answer is kept)", exc, name)
            return None
        except LLMOutputError as exc:
            usage = exc.usage if exc.usage.stage else exc.usage.model_copy(update={"stage": name})
            self.log.add(usage, failed=True)
            self.log.add_fallback(name)
            return None
        usage: Usage = result.usage
        if not usage.stage:
            usage = usage.model_copy(update={"stage": name})
        self.log.add(usage)
        return result.value


def candidate_context(cands: list[Candidate]) -> list[dict[str, Any]]:
    """Candidates as template data: id, text, kind and options with probabilities."""
    return [
        {
            "id": c.id,
            "text": c.text,
            "kind": c.kind,
            "tagger_type": c.tagger_type or "none",
            "options": [{"type": o.type, "prob": round(o.prob, 2)} for o in c.options],
        }
        for c in cands
    ]
