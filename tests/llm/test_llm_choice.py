"""Choice answers without a model: the layout of a choice schema, reading option probabilities
from token log-probabilities, and the compact grammar's text."""

from __future__ import annotations

import math
import re
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from cdlm.llm.choice import (
    TokenLogprobs,
    choice_layout,
    letter_offsets,
    one_hot,
    probs_from_tokens,
    renormalise,
)
from cdlm.llm.grammar import compact_gbnf, tail_gbnf


class Pick(BaseModel):
    c0: Literal["A", "B", "C", "D"]
    c3: Literal["A", "B"]
    r0: str = Field(max_length=20)


class NotAChoice(BaseModel):
    reason: str = Field(max_length=20)
    c0: Literal["A", "B"]


class TypeNames(BaseModel):
    c0: Literal["politician", "person"]


def test_layout_lists_the_letter_fields_then_the_rest() -> None:
    layout = choice_layout(Pick)
    assert layout.fields == (("c0", ("A", "B", "C", "D")), ("c3", ("A", "B")))
    assert layout.rest is not None and list(layout.rest["properties"]) == ["r0"]
    assert layout.rest["required"] == ["r0"] and layout.rest["additionalProperties"] is False
    for model in (NotAChoice, TypeNames):
        with pytest.raises(TypeError, match="starts with letter fields"):
            choice_layout(model)


def test_renormalise_over_the_offered_options_only() -> None:
    probs = renormalise({"A": math.log(0.2), "B": math.log(0.2), "Z": 0.0}, ["A", "B", "C"])
    assert probs == {"A": 0.5, "B": 0.5, "C": 0.0}  # "Z" was not offered; "C" not reported
    assert renormalise({}, ["A", "B"]) == {"A": 0.5, "B": 0.5}
    assert sum(renormalise({"A": -0.1, "B": -3.0, "C": -9.0}, "ABC").values()) == pytest.approx(1)


def tokens(*parts: tuple[str, float, dict[str, float]]) -> list[TokenLogprobs]:
    return [TokenLogprobs(t, lp, tuple(alts.items())) for t, lp, alts in parts]


def test_probs_from_server_tokens_with_a_merged_letter_token() -> None:
    """The server may emit ``"B`` as one token: its alternatives count only in the same shape
    (``"A``, ``"D``), never another shape that happens to hold a letter (``A``, `` C``)."""
    text = '{"c0": "B", "c3":"A", "r0":"ok"}'
    toks = tokens(
        ('{"', 0.0, {}), ("c", 0.0, {}), ("0", 0.0, {}), ('":', 0.0, {}), (" ", 0.0, {}),
        ('"B', math.log(0.5), {'"A': math.log(0.3), '"D': math.log(0.1), "A": math.log(0.1),
                               " C": math.log(0.2)}),
        ('",', 0.0, {}), (' "c3":"', 0.0, {}),
        ("A", math.log(0.6), {"B": math.log(0.3), "C": math.log(0.1)}),
        ('", "r0":"ok"}', 0.0, {}),
    )  # fmt: skip
    probs = probs_from_tokens(text, toks, choice_layout(Pick))
    assert probs is not None
    assert probs["c0"] == pytest.approx({"A": 1 / 3, "B": 5 / 9, "C": 0.0, "D": 1 / 9}, abs=1e-6)
    assert probs["c3"] == pytest.approx({"A": 2 / 3, "B": 1 / 3}, abs=1e-6)  # "C" not offered
    assert probs_from_tokens(text + " ", toks, choice_layout(Pick)) is None  # tokens != text
    assert letter_offsets(text, ["c0", "c3"]) == {"c0": text.index("B"), "c3": text.index("A")}
    with pytest.raises(ValueError, match="'c9' not found"):
        letter_offsets(text, ["c9"])


def test_one_hot_for_a_backend_without_logprobs() -> None:
    value = Pick(c0="C", c3="A", r0="because")
    assert one_hot(value, choice_layout(Pick)) == {
        "c0": {"A": 0.0, "B": 0.0, "C": 1.0, "D": 0.0},
        "c3": {"A": 1.0, "B": 0.0},
    }


def _space_rule(gbnf: str) -> str:
    return re.search(r"(?m)^space ::= (.*)$", gbnf).group(1)


def test_compact_grammar_has_no_whitespace_rule() -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = choice_layout(Pick).rest
    assert _space_rule(json_schema_to_gbnf(__import__("json").dumps(schema))) == '" "?'
    assert _space_rule(compact_gbnf(schema)) == '""'
    tail = tail_gbnf(schema)
    assert re.search(r'(?m)^root ::= "," ', tail) and '"{"' not in tail.split("root ::=")[1]
