"""What every LLM stage shares: the :class:`Stage` description the registry holds
(:mod:`cdlm.reasoning.stages`), the task (domain, types, config), guarded calls, and the
schema helpers that keep structured output bounded.

Concurrency: :meth:`Task.ask_many` sends independent requests of one stage (the experts of a
round) through the backend's ``complete_many``, and :meth:`Task.map` runs independent sentences
side by side; both use up to the backend's ``max_workers`` (``llm.concurrency``; a llama.cpp
backend says 1 and stays serial). Each result goes back to its own slot, so outputs and their
order do not depend on the concurrency.

Bounded schemas matter: under a JSON grammar a small model that may write an unbounded array or
string can loop until ``max_tokens``; every list and string in an output model has a maximum.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cdlm.config import LLMConfig, ReasoningConfig
from cdlm.errors import ContextOverflowError
from cdlm.llm.base import LLMBackend, LLMOutputError, LLMResult, Usage
from cdlm.llm.choice import LETTERS
from cdlm.llm.structured import Request
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.templates import PromptSet

T = TypeVar("T", bound=BaseModel)
A = TypeVar("A")
R = TypeVar("R")
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
    """One reasoning job: the backend, the prompts, the domain's types and the config.

    ``reasons``: whether answers carry free-text reasons (``reasoning.reasons``, resolved
    against ``--explain`` by :func:`cdlm.reasoning.stages.make_task`)."""

    backend: LLMBackend
    prompts: PromptSet
    config: ReasoningConfig
    domain: str | None
    types: list[str]
    log: UsageLog
    reasons: bool = False
    warned_overflow: bool = field(default=False, repr=False)
    # Per-run answers a stage reuses (e.g. the vote's content-free letter priors), under `lock`
    # because sentences may run side by side (:meth:`map`).
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def workers(self) -> int:
        """Requests the backend takes at once (1 for a backend that does not say)."""
        return max(1, int(getattr(self.backend, "max_workers", 1)))

    @property
    def max_reason(self) -> int | None:
        """The bound on a reason field, or None when answers carry no reasons."""
        return self.config.max_reason_chars if self.reasons else None

    def type_context(self) -> dict[str, Any]:
        """Template variables every stage gets: domain name, the types with descriptions, and
        whether the tagger's option probabilities are shown (``reasoning.show_probs``)."""
        return {
            "domain": self.prompts.domain_name(self.domain),
            "types": self.prompts.labels(self.domain, self.types),
            "show_probs": self.config.show_probs,
        }

    def ask(self, stage: Stage, variables: dict[str, Any], schema: type[T]) -> T | None:
        """Render, call, account. ``None`` when the answer could not be parsed after the
        backend's retries: the caller falls back to the tagger and the fallback is counted."""
        (result,) = self.ask_many(stage, [(variables, schema)])
        return None if result is None else result.value

    def ask_many(
        self,
        stage: Stage,
        jobs: Sequence[tuple[dict[str, Any], type[BaseModel]]],
        *,
        logprobs: bool = False,
    ) -> list[LLMResult[Any] | None]:
        """:meth:`ask` for independent ``(variables, schema)`` jobs of one stage, sent together
        (up to the backend's ``max_workers`` at a time); results in job order. With
        ``logprobs``, choice answers come with their option probabilities where readable."""
        requests = [
            Request(self.prompts.render(stage.template, v), schema, stage.name, logprobs)
            for v, schema in jobs
        ]
        many = getattr(self.backend, "complete_many", None)
        if many is not None and len(requests) > 1:
            outs = many(requests)
        else:
            outs = [self._complete(r) for r in requests]
        return [self._account(stage.name, out) for out in outs]

    def _complete(self, req: Request) -> LLMResult[Any] | Exception:
        try:
            return self.backend.complete(
                req.messages, req.schema, stage=req.stage, logprobs=req.logprobs
            )
        except (ContextOverflowError, LLMOutputError) as exc:
            return exc

    def _account(self, name: str, out: LLMResult[Any] | Exception) -> LLMResult[Any] | None:
        """Log one answer's usage; a failure becomes ``None`` and a counted fallback."""
        if isinstance(out, ContextOverflowError):
            # One long sentence must not stop a run: keep the tagger's answer, count it, and
            # say once how to make room.
            self.log.add_fallback(name, overflow=True)
            if not self.warned_overflow:
                self.warned_overflow = True
                logger.warning("warning: %s (stage %s; the tagger's answer is kept)", out, name)
            return None
        if isinstance(out, LLMOutputError):
            usage = out.usage if out.usage.stage else out.usage.model_copy(update={"stage": name})
            self.log.add(usage, failed=True)
            self.log.add_fallback(name)
            return None
        if isinstance(out, Exception):
            raise out
        usage: Usage = out.usage
        if not usage.stage:
            usage = usage.model_copy(update={"stage": name})
        self.log.add(usage)
        return out

    def map(self, fn: Callable[[A], R], items: Iterable[A]) -> Iterator[R]:
        """``fn(item)`` for every item, up to :attr:`workers` items at a time (for independent
        sentences); results are yielded in input order as they are ready."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)))
        try:
            yield from pool.map(fn, items)
        finally:  # an error (or a consumer that stops) cancels the items not started yet
            pool.shutdown(wait=True, cancel_futures=True)


def candidate_context(cands: list[Candidate]) -> list[dict[str, Any]]:
    """Candidates as template data: id, text, kind and options with probabilities and letters
    (a choice vote's answer for the option; the tagger's most probable type is "A")."""
    return [
        {
            "id": c.id,
            "text": c.text,
            "kind": c.kind,
            "tagger_type": c.tagger_type or "none",
            "options": [
                {"letter": LETTERS[j], "type": o.type, "prob": round(o.prob, 2)}
                for j, o in enumerate(c.options)
            ],
        }
        for c in cands
    ]
