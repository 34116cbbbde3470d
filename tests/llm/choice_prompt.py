"""A two-mention lettered choice shared by the llama.cpp and server tests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from cdlm.llm.base import Message


class Pick(BaseModel):
    c0: Literal["A", "B", "C", "D"]
    c1: Literal["A", "B", "C"]


CHOICE = [
    Message(role="system", content="You annotate named entities. Answer with JSON only."),
    Message(
        role="user",
        content='Sentence: """Angela Merkel led the CDU in Berlin."""\nFor every mention answer '
        "the letter of the option that fits it:\n"
        '- c0 "Angela Merkel": A) politician B) person C) politicalparty D) none\n'
        '- c1 "CDU": A) politicalparty B) organisation C) none',
    ),
]
