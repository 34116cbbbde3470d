"""llama.cpp grammars (GBNF) from the bounded JSON schemas, with no free whitespace.

llama-cpp-python's JSON-schema converter ends every literal with an optional ``space`` rule
(``space ::= " "?``), and a small model asked for readable JSON takes it: SmolLM2 answers
``{"c0": "A", "c1": "C"}`` instead of ``{"c0":"A","c1":"C"}``, a token per space. Here ``space``
matches nothing, so outside strings the answer has no whitespace at all -- padding is impossible,
whatever the prompt asks for.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SPACE_RULE = re.compile(r"(?m)^space ::= .*$")
_ROOT_OPEN = re.compile(r'(?m)^root ::= "\{" ')


def compact_gbnf(schema: dict[str, Any] | str) -> str:
    """The GBNF of a JSON schema with the whitespace rule emptied."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text = schema if isinstance(schema, str) else json.dumps(schema)
    gbnf, n = _SPACE_RULE.subn('space ::= ""', json_schema_to_gbnf(text))
    if n != 1:  # a converter without the rule would silently keep its whitespace
        raise RuntimeError("llama-cpp-python's JSON grammar has no 'space' rule to empty")
    return gbnf


def tail_gbnf(schema: dict[str, Any]) -> str:
    """The GBNF of the rest of an object whose first fields are already written: the object of
    ``schema`` with its opening ``{`` replaced by the ``,`` that continues the answer."""
    gbnf, n = _ROOT_OPEN.subn('root ::= "," ', compact_gbnf(schema))
    if n != 1:
        raise RuntimeError("unexpected root rule in llama-cpp-python's JSON grammar")
    return gbnf
