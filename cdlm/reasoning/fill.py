"""The FactMix context filler's prompt as a registered stage (``augment_fill``).

:class:`cdlm.augment.context.LLMFiller` asks the LLM for one word in place of a blank; its prompt
is ``fill.jinja`` in the prompts folder (a cloze plus worked examples as earlier chat turns, set
as ``examples`` in the template), so it is edited, exported and checked like the reasoning
stages, and its answer budget is ``llm.stage_max_tokens["augment_fill"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, create_model

from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.stage import Samples, Stage, Task

BLANK = "___"


def word_schema(max_chars: int) -> type[BaseModel]:
    """The filler's answer: one word, bounded inside the pattern itself because llama.cpp's
    grammar follows ``pattern`` and ignores ``maxLength`` when both are given."""
    pattern = rf"^[A-Za-z][A-Za-z'-]{{0,{max_chars - 1}}}$"
    # Named "Answer": SmolLM2 tends to echo the schema title into the field when it is descriptive.
    return create_model(
        "Answer", word=(str, Field(min_length=1, max_length=max_chars, pattern=pattern))
    )


def fill_variables(tokens: Sequence[str], pos: int) -> dict[str, Any]:
    """The template variables: ``cloze``, the sentence with word ``pos`` replaced by ``___``
    (as a masked LM sees it)."""
    return {"cloze": " ".join(BLANK if i == pos else tok for i, tok in enumerate(tokens))}


def _samples(task: Task, doc: Doc, cands: list[Candidate]) -> Samples:
    return [("cloze", fill_variables(doc.tokens, 2))]


FILL = Stage(
    name="augment_fill",
    template="fill.jinja",
    schema=word_schema,
    required=frozenset({"cloze"}),
    samples=_samples,
)
