"""The one small interface every LLM backend implements.

A caller sends chat messages plus a pydantic output model and gets back a validated instance and
a usage record. Parsing, schema-constrained decoding, repair retries, transport retries and the
cache are the backend's business; the reasoning stages never see raw text. A *choice* answer
(leading fields that are each one of a few letters, :mod:`cdlm.llm.choice`) may also come with
each field's option probabilities read from the model's log-probabilities (``logprobs=True``):
``LLMResult.probs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

T = TypeVar("T", bound=BaseModel)


# Text that chat templates and servers read as turn markers: <|im_start|>, <|eot_id|>,
# <|start_header_id|>, <｜User｜> (full-width bars), <start_of_turn>, [INST], <s> ...
CONTROL_TEXT = re.compile(r"<[|｜][^<>\n]{1,40}?[|｜]>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>")


def inert(text: str) -> str:
    """``text`` with every chat-control string broken by a space after its first character
    (``<|im_end|>`` -> ``< |im_end|>``): still readable, never a turn marker, so input text
    cannot end the user's turn and fake another role."""
    return CONTROL_TEXT.sub(lambda m: f"{m.group()[0]} {m.group()[1:]}", text)


class Message(BaseModel):
    role: str  # "system" | "user" | "assistant"
    content: str


class Usage(BaseModel):
    """What one request cost. Summed per stage by :class:`cdlm.llm.usage.UsageLog`."""

    stage: str = ""
    calls: int = 1  # backend calls actually made (0 on a cache hit)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hit: bool = False
    retries: int = 0  # transport retries + repair retries


# field name -> option -> probability, renormalised over the options the schema offers
ChoiceProbs = dict[str, dict[str, float]]


@dataclass(frozen=True)
class LLMResult(Generic[T]):
    value: T
    usage: Usage
    probs: ChoiceProbs | None = None  # only for logprobs=True, where the backend gives them


class LLMOutputError(Exception):
    """The model's answer could not be parsed/validated even after repair retries.

    Not a user error: reasoning stages catch it, fall back to the tagger, and count it.
    """

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class LLMBackend(Protocol):
    """A chat model that answers in a given pydantic schema."""

    name: str  # "llama" | "gpt"
    model: str  # GGUF path or API model name

    def complete(
        self, messages: list[Message], schema: type[T], *, stage: str = "", logprobs: bool = False
    ) -> LLMResult[T]:
        """Answer ``messages`` with an instance of ``schema``; with ``logprobs`` and a choice
        schema, also the option probabilities where the backend can read them.

        Raises :class:`LLMOutputError` when no valid answer was obtained (caller falls back) and
        :class:`cdlm.errors.LLMError` for setup problems the user must fix.
        """
        ...
