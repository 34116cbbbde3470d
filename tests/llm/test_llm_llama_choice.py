"""Compact answers and choice scoring with the real embedded SmolLM2 through llama.cpp."""

from __future__ import annotations

import re
from typing import Literal

import pytest
from choice_prompt import CHOICE, Pick
from pydantic import BaseModel, Field

from cdlm.llm.base import Message
from cdlm.llm.choice import choice_layout
from cdlm.llm.schema import schema_json

STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def outside_strings(text: str) -> str:
    return STRINGS.sub('""', text)


class Card(BaseModel):
    name: str = Field(max_length=24)
    kind: Literal["person", "location", "organisation", "other"]
    places: list[Literal["Warsaw", "Paris", "London"]] = Field(max_length=2)


PRETTY = [
    Message(
        role="system",
        content="You write JSON. Always pretty-print it for humans: a new line and four "
        "spaces of indentation for every key, and a space after every colon and comma.",
    ),
    Message(
        role="user",
        content="Marie Curie lived in Warsaw and Paris. Give her name, kind and places as "
        "nicely indented, pretty-printed JSON.",
    ),
]


def test_the_compact_grammar_makes_padding_impossible(smollm_backend, monkeypatch) -> None:
    """A prompt that begs for indented JSON gets none: outside strings the answer has no
    whitespace. Under llama-cpp-python's own grammar the same prompt does pad (so the prompt
    really asks for it, and this test fails with the old grammar)."""
    from llama_cpp import LlamaGrammar

    compact = smollm_backend._generate(PRETTY, Card, 60)
    Card.model_validate_json(compact.text)
    assert not re.search(r"\s", outside_strings(compact.text)), compact.text

    old = LlamaGrammar.from_json_schema(schema_json(Card), verbose=False)
    monkeypatch.setattr(smollm_backend, "_grammar", lambda schema, tail=False: old)
    padded = smollm_backend._generate(PRETTY, Card, 60)
    Card.model_validate_json(padded.text)
    assert re.search(r"\s", outside_strings(padded.text)), padded.text


def _letters(text: str) -> dict[str, str]:
    return Pick.model_validate_json(text).model_dump()


def test_logprob_scoring_is_greedy_decoding_without_generating(smollm_backend) -> None:
    """One pass gives each field's distribution over exactly its offered letters (summing to
    1); its argmax is the letter greedy decoding under a grammar of those letters picks at the
    same position, and the answer it writes validates."""
    from llama_cpp import LlamaGrammar

    scored = smollm_backend._generate(CHOICE, Pick, 40, logprobs=True)
    letters = _letters(scored.text)
    assert scored.text == f'{{"c0":"{letters["c0"]}","c1":"{letters["c1"]}"}}'
    layout = choice_layout(Pick)
    for name, options in layout.fields:
        dist = scored.probs[name]
        assert list(dist) == list(options)
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
        assert max(options, key=lambda o: (dist[o], -options.index(o))) == letters[name]

    prompt = smollm_backend.prompt_tokens(CHOICE)
    prefix = '{"c0":"'
    for i, (name, options) in enumerate(layout.fields):
        rule = "root ::= " + " | ".join(f'"{o}"' for o in options)
        out = smollm_backend.llm.create_completion(
            prompt=prompt + smollm_backend.tokenize(prefix),
            grammar=LlamaGrammar.from_string(rule, verbose=False),
            temperature=0.0,
            max_tokens=1,
        )
        assert out["choices"][0]["text"] == letters[name], name
        if i + 1 < len(layout.fields):
            prefix += f'{letters[name]}","{layout.fields[i + 1][0]}":"'
    assert scored.completion_tokens == len(smollm_backend.tokenize(scored.text))
    assert scored.prompt_tokens == len(prompt)


def test_scored_answer_is_reproducible(smollm_backend) -> None:
    """The same request gives the same letters and probabilities whatever the context held
    before (a fresh context, or another prompt's prefix)."""
    first = smollm_backend._generate(CHOICE, Pick, 40, logprobs=True)
    smollm_backend.llm.reset()
    fresh = smollm_backend._generate(CHOICE, Pick, 40, logprobs=True)
    smollm_backend._generate(PRETTY, Card, 20)  # something else in the context
    after = smollm_backend._generate(CHOICE, Pick, 40, logprobs=True)
    assert first.text == fresh.text == after.text
    for name, dist in first.probs.items():
        assert fresh.probs[name] == pytest.approx(dist, abs=1e-4)
        assert after.probs[name] == pytest.approx(dist, abs=1e-4)


class Explained(BaseModel):
    c0: Literal["A", "B", "C", "D"]
    c1: Literal["A", "B", "C"]
    r0: str = Field(pattern=r'^[^"\\\x00-\x1f]{0,30}$', max_length=30)
    r1: str = Field(pattern=r'^[^"\\\x00-\x1f]{0,30}$', max_length=30)


def test_reasons_follow_the_scored_letters_without_changing_them(smollm_backend) -> None:
    plain = smollm_backend._generate(CHOICE, Pick, 40, logprobs=True)
    explained = smollm_backend._generate(CHOICE, Explained, 80, logprobs=True)
    value = Explained.model_validate_json(explained.text)
    assert (value.c0, value.c1) == tuple(_letters(plain.text).values())
    assert explained.probs == plain.probs
    assert not re.search(r"\s", outside_strings(explained.text)), explained.text
