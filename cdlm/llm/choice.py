"""Choice answers: a flat JSON object whose leading fields are each one of a few letters.

A lettered choice (``{"c0":"A","c1":"C"}``) carries a decision in a handful of tokens, and its
options can be scored from the model's log-probabilities instead of being generated: the
distribution over the offered letters at the position where the letter goes, renormalised over
those letters. Both backends read that distribution: llama.cpp from its logits in one pass over
the prompt and the answer's fixed parts (:mod:`cdlm.llm.llama`), an OpenAI-compatible server
from the ``top_logprobs`` of the answer it generated (:mod:`cdlm.llm.gpt`). Free-text fields
(reasons) may follow the letters; they are generated after the letters are fixed, so asking for
reasons does not change the decision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cdlm.llm.base import ChoiceProbs
from cdlm.llm.schema import bounded_schema

LETTERS = "ABCDEFGHIJ"  # at most ten options per choice
PROB_DIGITS = 6  # probabilities are rounded, so cached and fresh answers compare equal


@dataclass(frozen=True)
class ChoiceLayout:
    """The letter fields of a choice schema, in answer order, and what follows them."""

    fields: tuple[tuple[str, tuple[str, ...]], ...]  # (JSON key, offered letters)
    rest: dict[str, Any] | None  # JSON schema of the fields after the letters (None: none)


def letter_options(values: Any) -> tuple[str, ...] | None:
    """The letters a JSON-schema property allows, or None when it is not a letter choice."""
    if not isinstance(values, dict):
        return None
    options = values.get("enum", [values["const"]] if "const" in values else None)
    if not options or not all(isinstance(v, str) and v in LETTERS for v in options):
        return None
    return tuple(options)


def choice_layout(schema: type[BaseModel]) -> ChoiceLayout:
    """The layout of ``schema``; a schema that does not start with a letter field is a
    programming error (``TypeError``)."""
    full = bounded_schema(schema)
    props: dict[str, Any] = full.get("properties", {})
    fields: list[tuple[str, tuple[str, ...]]] = []
    for name, prop in props.items():
        options = letter_options(prop)
        if options is None:
            break
        fields.append((name, options))
    if not fields:
        raise TypeError(f"{schema.__name__}: a choice schema starts with letter fields")
    rest_names = list(props)[len(fields) :]
    rest = None
    if rest_names:
        rest = {
            "type": "object",
            "properties": {n: props[n] for n in rest_names},
            "required": rest_names,
            "additionalProperties": False,
            **({"$defs": full["$defs"]} if "$defs" in full else {}),
        }
    return ChoiceLayout(tuple(fields), rest)


def renormalise(logprobs: dict[str, float], options: Sequence[str]) -> dict[str, float]:
    """Probabilities of ``options`` from their log-probabilities (a missing option counts as
    probability 0), summing to 1; all missing gives the uniform distribution."""
    present = [logprobs[o] for o in options if o in logprobs]
    if not present:
        return {o: round(1 / len(options), PROB_DIGITS) for o in options}
    top = max(present)
    weights = {o: math.exp(logprobs[o] - top) if o in logprobs else 0.0 for o in options}
    total = sum(weights.values())
    return {o: round(w / total, PROB_DIGITS) for o, w in weights.items()}


def letter_offsets(text: str, names: Sequence[str]) -> dict[str, int]:
    """Character offset of each field's letter in the answer ``text`` (JSON key, colon, quote,
    any whitespace between them). Keys are found in order; free-text values cannot contain a
    quote (see :func:`cdlm.reasoning.stage.text_field`), so a key cannot be faked inside one."""
    out, pos = {}, 0
    for name in names:
        found = re.compile(rf'"{re.escape(name)}"\s*:\s*"').search(text, pos)
        if found is None:
            raise ValueError(f"choice field {name!r} not found in the answer")
        out[name] = pos = found.end()
    return out


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token with the alternatives the server reported at its position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]


def probs_from_tokens(
    text: str, tokens: Sequence[TokenLogprobs], layout: ChoiceLayout
) -> ChoiceProbs | None:
    """Option probabilities of every letter field, from per-token log-probabilities of the
    generated ``text``; None when the tokens do not spell the text (nothing to read).

    The token holding a letter may carry neighbouring characters (``"A``); an alternative
    counts for letter ``X`` when it is the same token with ``X`` in the letter's place."""
    if "".join(t.token for t in tokens) != text:
        return None
    starts, at = [], 0
    for tok in tokens:
        starts.append(at)
        at += len(tok.token)
    offsets = letter_offsets(text, [name for name, _ in layout.fields])
    probs: ChoiceProbs = {}
    for name, options in layout.fields:
        offset = offsets[name]
        k = max(i for i, s in enumerate(starts) if s <= offset)
        tok, inner = tokens[k], offset - starts[k]
        seen: dict[str, float] = {}
        for alt, logprob in ((tok.token, tok.logprob), *tok.top):
            if len(alt) != len(tok.token) or alt[inner] not in options:
                continue
            if alt[:inner] == tok.token[:inner] and alt[inner + 1 :] == tok.token[inner + 1 :]:
                seen[alt[inner]] = max(seen.get(alt[inner], -math.inf), logprob)
        probs[name] = renormalise(seen, options)
    return probs


def one_hot(value: BaseModel, layout: ChoiceLayout) -> ChoiceProbs:
    """The answer's letters as certain choices (a backend that gives no log-probabilities)."""
    data = value.model_dump(by_alias=True)
    return {name: {o: float(o == data[name]) for o in options} for name, options in layout.fields}
