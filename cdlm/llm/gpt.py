"""The ``gpt`` backend: the official ``openai`` client, for OpenAI or any compatible server.

Any model name is accepted (no allow-list); ``base_url`` (config, ``--base-url`` or
``OPENAI_BASE_URL``) points it at another server, e.g. ``python -m llama_cpp.server``. The key is
read only from ``OPENAI_API_KEY``; a loopback server without one gets the placeholder
``"not-needed"`` (local servers ignore it).

Structured output uses JSON mode (``response_format={"type": "json_object"}``) plus pydantic
validation and a repair retry (shared loop in :mod:`cdlm.llm.structured`). For llama_cpp.server
the schema also goes inside ``response_format`` (``llm.json_schema_in_request``), where it
constrains decoding with a grammar.

Choice answers with ``logprobs`` ask the server for each answer token's ``top_logprobs``
(``llm.top_logprobs``) and read every letter's distribution from them
(:func:`cdlm.llm.choice.probs_from_tokens`); a server that returns none leaves the probabilities
out and the caller takes the answer's letters as they are. A model that refuses the parameter
(HTTP 400 naming logprobs) is asked again without it, and from then on, with one warning.

Transport retries are tenacity's alone (the client's own ``max_retries`` is 0): 408/409/429/5xx,
timeouts and connection errors back off exponentially, a ``Retry-After`` header (seconds or an
HTTP date) is honoured up to ``llm.retry_after_max_s`` (one it cannot read is ignored), and one
request with all its retries never runs longer than ``llm.max_total_s``.
"""

from __future__ import annotations

import datetime
import email.utils
import ipaddress
import json
import logging
import math
import os
import time
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from cdlm.config import LLMConfig
from cdlm.errors import ContextOverflowError, LLMError
from cdlm.llm.base import Message, inert
from cdlm.llm.cache import AnswerCache
from cdlm.llm.choice import TokenLogprobs, choice_layout, probs_from_tokens
from cdlm.llm.schema import bounded_schema
from cdlm.llm.structured import Generation, StructuredBackend

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-3.5-turbo-0125"
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_PLACEHOLDER_KEY = "not-needed"
RETRY_STATUS = {408, 409, 429}


def is_loopback(url: str | None) -> bool:
    host = urlsplit(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _public_url(url: str) -> str:
    """``url`` without credentials or query (safe for cache keys and messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def _seconds(value: str) -> float | None:
    """A header's seconds (int or float; an infinite one is clamped later), or None when it is
    not a number."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return None if math.isnan(seconds) else seconds


def _http_date_s(value: str) -> float | None:
    """Seconds until an HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``; no zone = UTC), or None
    when ``value`` is not one."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() - time.time()


def retry_after_s(exc: BaseException, limit: float) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, else ``Retry-After`` as seconds
    or an HTTP date), within ``[0, limit]``; None when it did not ask in a form we can read
    (the default backoff then)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    asked = None
    if (ms := headers.get("retry-after-ms")) is not None and (asked := _seconds(ms)) is not None:
        asked /= 1000
    value = headers.get("retry-after")
    if asked is None and value is not None:
        asked = _seconds(value)
        if asked is None:
            asked = _http_date_s(value)
    return None if asked is None else min(limit, max(0.0, asked))


def is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError | json.JSONDecodeError):
        return True  # timeouts, refused/reset connections, a garbled body (proxy hiccup)
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def _short(exc: BaseException) -> str:
    import openai

    text = " ".join(str(exc).split())
    if isinstance(exc, openai.APIStatusError):
        text = f"HTTP {exc.status_code}: {text}"
    elif isinstance(exc, openai.APITimeoutError):
        text = "request timed out"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"response body is not JSON ({text})"
    return text[:200]


class GptBackend(StructuredBackend):
    """A chat model behind the OpenAI API (or a compatible server)."""

    name = "gpt"

    def __init__(self, cfg: LLMConfig, cache: AnswerCache | None = None) -> None:
        super().__init__(cfg, cache)
        import openai

        self.model = cfg.model or DEFAULT_MODEL
        self.base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.url = _public_url(self.base_url or OPENAI_URL)
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            if not is_loopback(self.base_url):
                raise LLMError(
                    f"OPENAI_API_KEY is not set (needed for {self.url}); export it in the "
                    "environment -- cdlm never reads keys from files or flags"
                )
            key = LOCAL_PLACEHOLDER_KEY
        self.schema_in_request = (
            cfg.json_schema_in_request
            if cfg.json_schema_in_request is not None
            else is_loopback(self.base_url)
        )
        # A server that grammar-constrains on the schema in the request needs no copy of it in
        # the prompt (llm.schema_in_prompt = None); JSON mode alone does.
        self.schema_in_prompt_default = not self.schema_in_request
        self.client = openai.OpenAI(
            api_key=key, base_url=self.base_url, timeout=cfg.timeout_s, max_retries=0
        )
        self.logprobs_supported = True  # until the server refuses them once

    @property
    def model_id(self) -> str:
        return f"{self.url}|{self.model}"

    def _sampling_params(self, stage: str = "") -> dict[str, Any]:
        return {**super()._sampling_params(stage), "schema_in_request": self.schema_in_request}

    def _response_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        fmt: dict[str, Any] = {"type": "json_object"}
        if self.schema_in_request:
            fmt["schema"] = bounded_schema(schema)
        return fmt

    def _generate(
        self,
        messages: list[Message],
        schema: type[BaseModel],
        max_tokens: int,
        logprobs: bool = False,
    ) -> Generation:
        import openai

        cfg = self.cfg
        start = time.monotonic()
        extra: dict[str, Any] = {}
        if logprobs and self.logprobs_supported:
            extra = {"logprobs": True, "top_logprobs": cfg.top_logprobs}

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = min(cfg.retry_max_s, cfg.retry_initial_s * 2 ** (state.attempt_number - 1))
            asked = retry_after_s(exc, cfg.retry_after_max_s) if exc else None
            return asked if asked is not None else backoff

        # A compatible server (llama.cpp, vLLM) may render a chat template over the contents
        # and parse special tokens in them: control strings in input text go out broken up.
        sent = [{"role": m.role, "content": inert(m.content)} for m in messages]
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=wait,
            stop=stop_after_attempt(cfg.max_retries + 1) | stop_before_delay(cfg.max_total_s),
            reraise=True,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    remaining = cfg.max_total_s - (time.monotonic() - start)
                    response = self.client.chat.completions.create(
                        model=self.model,
                        messages=sent,  # type: ignore[misc]
                        response_format=self._response_format(schema),  # type: ignore[arg-type]
                        temperature=cfg.temperature,
                        max_tokens=max_tokens,
                        seed=cfg.seed,
                        timeout=max(0.1, min(cfg.timeout_s, remaining)),
                        **extra,
                    )
        except openai.APIResponseValidationError as exc:
            # A 200 whose body is not a chat completion: treat as an unusable answer (repaired).
            return Generation(text=str(exc.body or "")[:2000], retries=attempts - 1)
        except openai.BadRequestError as exc:
            if extra and "logprobs" in str(exc).lower():  # a model that cannot return them
                self.logprobs_supported = False
                logger.warning(
                    "warning: %s (model %s) refuses logprobs (%s); choice votes count the "
                    "answered letters from now on",
                    self.url,
                    self.model,
                    _short(exc),
                )
                return self._generate(messages, schema, max_tokens, logprobs)
            if exc.code == "context_length_exceeded":  # OpenAI and llama_cpp.server both say so
                raise ContextOverflowError(
                    f"{self.url} (model {self.model}): {_short(exc)}; shorten the prompt or "
                    "lower llm.max_tokens / llm.stage_max_tokens"
                ) from None
            raise LLMError(self._failure(exc, attempts, time.monotonic() - start)) from None
        except (openai.APIError, json.JSONDecodeError) as exc:
            raise LLMError(self._failure(exc, attempts, time.monotonic() - start)) from None
        if not response.choices:
            return Generation(text="", retries=attempts - 1)
        choice = response.choices[0]
        usage = response.usage
        text = choice.message.content or ""
        return Generation(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            retries=attempts - 1,
            truncated=choice.finish_reason == "length",
            probs=self._choice_probs(text, choice, schema) if logprobs else None,
        )

    @staticmethod
    def _choice_probs(text: str, choice: Any, schema: type[BaseModel]) -> Any:
        """Option probabilities from the answer's token log-probabilities (None: none given,
        or an answer whose letters cannot be found -- the shared loop then repairs it)."""
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        if not content:
            return None
        tokens = [
            TokenLogprobs(
                t.token, t.logprob, tuple((a.token, a.logprob) for a in t.top_logprobs or [])
            )
            for t in content
        ]
        try:
            return probs_from_tokens(text, tokens, choice_layout(schema))
        except ValueError:
            return None

    def _failure(self, exc: BaseException, attempts: int, seconds: float) -> str:
        import openai

        where = f"{self.url} (model {self.model})"
        if isinstance(exc, openai.AuthenticationError):
            return f"{where}: the server rejected OPENAI_API_KEY ({_short(exc)})"
        if isinstance(exc, openai.NotFoundError):
            return f"{where}: not found -- check llm.model and llm.base_url ({_short(exc)})"
        if not is_retryable(exc):
            return f"{where}: request refused: {_short(exc)}"
        if isinstance(exc, openai.APIConnectionError) and not isinstance(
            exc, openai.APITimeoutError
        ):
            what = "cannot reach the server"
        else:
            what = "gave up"
        return (
            f"{where}: {what} after {attempts} attempt(s) in {seconds:.1f}s "
            f"(llm.max_retries={self.cfg.max_retries}, llm.max_total_s={self.cfg.max_total_s}): "
            f"{_short(exc)}; rerun to resume from the cache"
        )
