"""Bounded schemas: a tiny model under a grammar must not be able to loop."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, Field

from cdlm.cli.llm import PingAnswer
from cdlm.llm.schema import UnboundedSchemaError, bounded_schema


class Loose(BaseModel):
    names: list[str] = Field(max_length=3)  # strings inside are unbounded


class NoMax(BaseModel):
    reason: str


class FreeDict(BaseModel):
    scores: dict[str, int]


@pytest.mark.parametrize(
    ("model", "where"),
    [(Loose, "Loose.names[]"), (NoMax, "NoMax.reason"), (FreeDict, "FreeDict.scores")],
)
def test_unbounded_models_are_refused_with_the_field(model, where):
    with pytest.raises(UnboundedSchemaError, match=rf"^{re.escape(where)}:"):
        bounded_schema(model)


def test_bounded_schema_is_closed_and_fully_required():
    schema = bounded_schema(PingAnswer)
    assert schema["properties"]["entities"]["maxItems"] == 3
    entity = schema["$defs"]["PingEntity"]
    assert entity["additionalProperties"] is False
    assert entity["required"] == ["text", "type"]
    assert entity["properties"]["text"]["maxLength"] == 30
