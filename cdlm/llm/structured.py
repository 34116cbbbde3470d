"""The request loop every backend shares: cache lookup, generate, validate, repair, record.

A backend subclass only says how to turn messages into text (``_generate``); this module owns
what happens around it, so both backends behave the same: the answer is validated with the
stage's pydantic model; an invalid one is shown back to the model with the validation error
(``llm.repair_retries`` times, while that repair turn fits the context); a valid one is cached
at once; a request that never validates raises :class:`LLMOutputError` (the caller falls back
and counts it) -- never an empty answer -- and is cached as a failure, so a re-run falls back at
once instead of paying for it again.
"""

from __future__ import annotations

import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cdlm.config import LLMConfig
from cdlm.errors import ContextOverflowError
from cdlm.llm.base import LLMOutputError, LLMResult, Message, Usage
from cdlm.llm.cache import AnswerCache, cache_key
from cdlm.llm.schema import schema_json
from cdlm.llm.usage import UsageLog

T = TypeVar("T", bound=BaseModel)

SCHEMA_INSTRUCTION = "Reply with one JSON object, nothing else, that matches this JSON schema: "
REPAIR_INSTRUCTION = (
    "Your previous answer was not valid: {error}. Reply again with only one JSON object that "
    "matches the schema."
)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


@dataclass
class Generation:
    """Raw text from one backend round trip (after transport retries)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transport retries spent on this generation
    truncated: bool = False  # stopped by max_tokens


@dataclass(frozen=True)
class Request:
    """One item for :meth:`StructuredBackend.complete_many`."""

    messages: list[Message]
    schema: type[BaseModel]
    stage: str = ""


def parse_answer(text: str, schema: type[T]) -> T:
    """Validate ``text`` as ``schema``; tolerates a Markdown code fence around the JSON."""
    fenced = _FENCE.match(text)
    return schema.model_validate_json(fenced.group(1) if fenced else text)


def describe_error(exc: ValidationError, limit: int = 3) -> str:
    """A short, one-line account of what was wrong, to show the model (and the user)."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "answer"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{exc.error_count() - limit} more)" if exc.error_count() > limit else ""
    return "; ".join(parts) + more


class StructuredBackend(ABC):
    """Base class for backends: implements ``complete`` and ``complete_many`` on ``_generate``."""

    name: str
    model: str

    def __init__(self, cfg: LLMConfig, cache: AnswerCache | None = None) -> None:
        self.cfg = cfg
        self.cache = cache
        self.usage = UsageLog()

    # -- what a backend provides ------------------------------------------------------------
    @property
    @abstractmethod
    def model_id(self) -> str:
        """Identity of the weights for cache keys (a GGUF's content hash, an API model name)."""

    @abstractmethod
    def _generate(
        self, messages: list[Message], schema: type[BaseModel], max_tokens: int
    ) -> Generation:
        """One answer as text of at most ``max_tokens`` tokens (transport retries included)."""

    # Whether the schema goes into the prompt when llm.schema_in_prompt is None.
    schema_in_prompt_default: bool = True

    def max_tokens(self, stage: str = "") -> int:
        """The answer budget of a stage (``llm.stage_max_tokens``, else ``llm.max_tokens``)."""
        return self.cfg.answer_budget(stage)

    def _sampling_params(self, stage: str = "") -> dict[str, Any]:
        return {
            "temperature": self.cfg.temperature,
            "max_tokens": self.max_tokens(stage),
            "seed": self.cfg.seed,
        }

    @property
    def max_workers(self) -> int:
        return self.cfg.concurrency

    # -- the shared loop -----------------------------------------------------------------------
    def prepare(self, messages: list[Message], schema: type[BaseModel]) -> list[Message]:
        """The messages actually sent: the schema is stated in the system message if configured."""
        wanted = self.cfg.schema_in_prompt
        if not (self.schema_in_prompt_default if wanted is None else wanted):
            return list(messages)
        note = SCHEMA_INSTRUCTION + schema_json(schema)
        if messages and messages[0].role == "system":
            first = Message(role="system", content=f"{messages[0].content}\n\n{note}")
            return [first, *messages[1:]]
        return [Message(role="system", content=note), *messages]

    def complete(
        self, messages: list[Message], schema: type[T], *, stage: str = ""
    ) -> LLMResult[T]:
        start = time.perf_counter()
        sent = self.prepare(messages, schema)
        key = None
        if self.cache is not None:
            key = cache_key(
                backend=self.name,
                model_id=self.model_id,
                params=self._sampling_params(stage),
                schema=schema_json(schema),
                messages=sent,
            )
            cached = self._cached(key, stage, schema, start)
            if cached is not None:
                return cached

        usage = Usage(stage=stage, calls=0)
        max_tokens = self.max_tokens(stage)
        convo = sent
        error = "no attempt made"
        for attempt in range(1 + self.cfg.repair_retries):
            try:
                gen = self._generate(convo, schema, max_tokens)
            except ContextOverflowError:
                if not attempt:
                    raise  # the request itself does not fit: the caller decides
                # The repair turn (request + bad answer + instruction) outgrew the context, and
                # a later one would too: a failed answer, cached like any other.
                error = f"{error}; the repair turn does not fit the context"
                break
            usage.calls += 1 + gen.retries
            usage.retries += gen.retries + (1 if attempt else 0)
            usage.prompt_tokens += gen.prompt_tokens
            usage.completion_tokens += gen.completion_tokens
            try:
                value = parse_answer(gen.text, schema)
            except ValidationError as exc:
                error = describe_error(exc)
                if gen.truncated:
                    error = f"answer cut off at max_tokens={max_tokens} ({error})"
                repair = REPAIR_INSTRUCTION.format(error=error)
                convo = [
                    *sent,
                    Message(role="assistant", content=gen.text),
                    Message(role="user", content=repair),
                ]
                continue
            if key is not None and self.cache is not None:
                self.cache.put(key, gen.text, gen.prompt_tokens, gen.completion_tokens)
            usage.seconds = time.perf_counter() - start
            self.usage.add(usage)
            return LLMResult(value, usage)
        if key is not None and self.cache is not None and self.cfg.cache_failures:
            self.cache.put_failure(key, error, 1 + self.cfg.repair_retries)
        usage.seconds = time.perf_counter() - start
        self.usage.add(usage, failed=True)
        raise LLMOutputError(self._failure_message(stage, schema, error), usage)

    def _failure_message(
        self, stage: str, schema: type[BaseModel], error: str, attempts: int | None = None
    ) -> str:
        tries = attempts if attempts is not None else 1 + self.cfg.repair_retries
        return (
            f"{self.name} answer for stage '{stage or 'default'}' did not validate as "
            f"{schema.__name__} after {tries} attempts: {error}"
        )

    def _cached(self, key: str, stage: str, schema: type[T], start: float) -> LLMResult[T] | None:
        """The stored answer for ``key``; raises a stored failure; ``None`` = ask the model."""
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            return None
        usage = Usage(stage=stage, calls=0, cache_hit=True)
        if "failed" in hit:
            if not self.cfg.cache_failures or hit["attempts"] < 1 + self.cfg.repair_retries:
                return None  # it may try harder now: ask again
            usage.seconds = time.perf_counter() - start
            self.usage.add(usage, failed=True)
            message = self._failure_message(stage, schema, hit["failed"], hit["attempts"])
            raise LLMOutputError(f"{message} (cached; clear llm.cache_dir to ask again)", usage)
        try:
            value = parse_answer(hit["text"], schema)
        except ValidationError:
            return None  # stored under an older model class: ask again
        usage.seconds = time.perf_counter() - start
        self.usage.add(usage)
        return LLMResult(value, usage)

    def complete_many(
        self, requests: Sequence[Request | tuple[list[Message], type[BaseModel], str]]
    ) -> list[LLMResult[Any] | LLMOutputError]:
        """Answer many requests, at most ``max_workers`` at a time, in input order.

        An answer that never validated comes back as its :class:`LLMOutputError` (with usage) in
        its slot, so nothing is lost; setup errors (:class:`cdlm.errors.LLMError`) propagate.
        """
        items = [r if isinstance(r, Request) else Request(*r) for r in requests]

        def one(req: Request) -> LLMResult[Any] | LLMOutputError:
            try:
                return self.complete(req.messages, req.schema, stage=req.stage)
            except LLMOutputError as exc:
                return exc

        if self.max_workers <= 1 or len(items) <= 1:
            return [one(r) for r in items]
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(one, items))


class SerialBackend(StructuredBackend):
    """A backend whose engine is not thread-safe (one llama.cpp context): one call at a time."""

    def __init__(self, cfg: LLMConfig, cache: AnswerCache | None = None) -> None:
        super().__init__(cfg, cache)
        self._lock = threading.Lock()

    @property
    def max_workers(self) -> int:
        return 1
