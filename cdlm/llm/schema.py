"""JSON schemas for structured output, derived from the stage's pydantic model.

Why bounded: llama.cpp turns the schema into a grammar, and a tiny model under a grammar happily
repeats itself forever inside an unbounded array or string (until ``max_tokens`` truncates the
JSON). So every array needs ``maxItems`` and every free string ``maxLength`` -- set them on the
model with ``Field(max_length=...)``. :func:`bounded_schema` refuses a model that forgets one
(naming the field), and tightens the rest: every object gets ``additionalProperties: false`` and
all its properties become required, so the grammar has exactly one shape to fill.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from pydantic import BaseModel


class UnboundedSchemaError(TypeError):
    """An output model has an array or string without an upper bound (a programming error)."""


def bounded_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, checked to be bounded and tightened for grammar decoding."""
    return copy.deepcopy(_bounded_schema_cached(model))


def schema_json(model: type[BaseModel]) -> str:
    """Canonical (sorted, compact) JSON text of :func:`bounded_schema`, e.g. for cache keys."""
    return json.dumps(_bounded_schema_cached(model), sort_keys=True, separators=(",", ":"))


@cache
def _bounded_schema_cached(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    _tighten(schema, model.__name__)
    return schema


def _tighten(node: Any, where: str) -> None:
    """Walk the schema in place: check bounds, close objects, require all properties."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _tighten(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "array" and "maxItems" not in node and "prefixItems" not in node:
        raise UnboundedSchemaError(
            f"{where}: array has no maxItems; declare it with Field(max_length=N)"
        )
    free_string = "enum" not in node and "const" not in node and "pattern" not in node
    if kind == "string" and free_string and "maxLength" not in node:
        raise UnboundedSchemaError(
            f"{where}: string has no maxLength; declare it with Field(max_length=N)"
        )
    if kind == "object":
        props = node.get("properties")
        if not props:
            raise UnboundedSchemaError(
                f"{where}: free-form object (dict) cannot be bounded; use a pydantic model"
            )
        node["additionalProperties"] = False
        node["required"] = list(props)
    for key, child in node.items():
        if key == "properties":
            for name, sub in child.items():
                _tighten(sub, f"{where}.{name}")
        elif key == "$defs":
            for name, sub in child.items():
                _tighten(sub, name)
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems"):
            _tighten(child, f"{where}.{key}" if key != "items" else f"{where}[]")
