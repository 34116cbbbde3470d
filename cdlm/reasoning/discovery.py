"""Stage 1, causality discovery: direct cause -> effect links between context phrases and entity
mentions, each with the type the cause supports.

The output schema constrains ``type`` to the domain's types and, when the tagger proposed
candidates, ``effect`` to their texts. ``cause`` is free text, so every link is grounded: a cause
or effect that does not occur in the sentence is dropped and counted. Without candidates (the
LLM-only mode) the grounded effects become the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, create_model

from cdlm.reasoning.candidates import NONE, Candidate, Doc, Option, ground
from cdlm.reasoning.stage import (
    Output,
    Samples,
    Stage,
    Task,
    candidate_context,
    literal,
    text_field,
)


@dataclass(frozen=True)
class Link:
    cause: str
    effect: str
    type: str
    cause_span: tuple[int, int]  # character offsets in the sentence
    effect_span: tuple[int, int]


@lru_cache(maxsize=256)
def discovery_schema(
    types: tuple[str, ...], mentions: tuple[str, ...], max_links: int, max_chars: int
) -> type[Output]:
    """``{"links": [{"cause", "effect", "type"}]}`` with bounded strings and array."""
    effect = (literal(mentions), ...) if mentions else (str, text_field(max_chars))
    link = create_model(
        "CausalLink",
        __base__=Output,
        cause=(str, text_field(max_chars)),
        effect=effect,
        type=(literal(types), ...),
    )
    return create_model(
        "Discovery", __base__=Output, links=(list[link], Field(max_length=max_links))
    )


@dataclass
class DiscoveryResult:
    links: list[Link]
    dropped: int  # links whose cause or effect is not in the sentence
    ok: bool  # False = the answer was unusable (fallback counted in the log)


def discovery_variables(task: Task, doc: Doc, cands: list[Candidate] | None) -> dict:
    """The template variables of the discovery prompt."""
    return {
        **task.type_context(),
        "sentence": doc.text,
        "candidates": candidate_context(cands or []),
        "llm_only": cands is None,
        "max_links": task.config.max_links,
    }


def _samples(task: Task, doc: Doc, cands: list[Candidate]) -> Samples:
    return [
        ("tagger candidates", discovery_variables(task, doc, cands)),
        ("LLM-only", discovery_variables(task, doc, None)),
    ]


DISCOVERY = Stage(
    name="discovery",
    template="discovery.jinja",
    schema=discovery_schema,
    required=frozenset({"sentence", "types"}),
    samples=_samples,
)


def discover(task: Task, doc: Doc, cands: list[Candidate] | None) -> DiscoveryResult:
    """Ask for causal links about ``cands`` (or, with ``None``, about mentions the model finds)."""
    cfg = task.config
    mentions = tuple(dict.fromkeys(c.text[: cfg.max_phrase_chars] for c in cands or []))
    schema = discovery_schema(tuple(task.types), mentions, cfg.max_links, cfg.max_phrase_chars)
    answer = task.ask(DISCOVERY, discovery_variables(task, doc, cands), schema)
    if answer is None:
        return DiscoveryResult([], 0, False)
    links, dropped = [], 0
    for raw in answer.links:
        cause, effect = ground(raw.cause, doc.text), ground(raw.effect, doc.text)
        if cause is None or effect is None:
            dropped += 1
            continue
        links.append(Link(raw.cause.strip(), raw.effect.strip(), raw.type, cause, effect))
    return DiscoveryResult(links, dropped, True)


def proposed_candidates(doc: Doc, links: list[Link], top_k: int) -> list[Candidate]:
    """LLM-only mode: one candidate per distinct grounded effect, snapped to whole words, with
    the types its links support (most supported first) plus "none"."""
    spans: dict[tuple[int, int], list[str]] = {}
    for link in links:
        words = doc.words_in(*link.effect_span)
        if words is not None:
            spans.setdefault(words, []).append(link.type)
    out: list[Candidate] = []
    taken: set[int] = set()
    for (start, end), types in sorted(spans.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        if taken & set(range(start, end)):
            continue  # overlapping proposals: the earlier, then longer, span wins
        taken |= set(range(start, end))
        counts = {t: types.count(t) / len(types) for t in dict.fromkeys(types)}
        ranked = sorted(counts, key=lambda t: -counts[t])[:top_k]
        cs, ce = doc.char_span(start, end)
        out.append(
            Candidate(
                id=len(out),
                start=start,
                end=end,
                text=doc.text[cs:ce],
                char_start=cs,
                char_end=ce,
                options=[*(Option(t, round(counts[t], 2)) for t in ranked), Option(NONE, 0.0)],
                kind="proposed",
                tagger_type=None,
                confidence=0.0,
                margin=0.0,
                evidence=ranked,
            )
        )
    return out
