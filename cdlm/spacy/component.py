"""The ``cdlm`` spaCy component: cdlm's entities as ``doc.ents``.

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("cdlm", config={"model": "default", "domain": "politics"})
    doc = nlp("Angela Merkel met Emmanuel Macron in Paris.")
    [(e.text, e.label_, e._.cdlm_score, e._.cdlm_source) for e in doc.ents]

- ``doc.ents`` holds the entities (replacing earlier ones, as an NER component does);
  ``doc.spans["cdlm"]`` holds the same spans with their scores and sources as group attributes
  (``attrs["scores"]``, ``attrs["sources"]``, aligned with the spans, as spaCy's span
  categorizer stores scores), and each span has ``span._.cdlm_score`` / ``span._.cdlm_source``.
- ``nlp.pipe(texts, batch_size=N)`` sends the texts of each batch to the model in one call.
- cdlm tags its own tokens and returns character offsets; each entity becomes the spaCy span
  with exactly those offsets (``doc.char_span(..., alignment_mode="strict")``). An entity whose
  ends fall inside a spaCy token is not moved to other boundaries: it is left out of
  ``doc.ents``, kept in ``doc.user_data["cdlm"]["unaligned"]`` (the entity dicts) and logged as
  a warning with the count.

Config: ``model`` (``"default"``, a model name or folder), ``domain``, ``threshold``, ``llm``
(``None``, ``"llama"`` or ``"gpt"``), ``quantize`` (``"none"`` or ``"int8"``), ``batch_size``
(texts per forward pass inside the model), ``spans_key``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.util import minibatch

logger = logging.getLogger("cdlm.spacy")
USER_DATA = "cdlm"


def _register_extensions() -> None:
    for name in ("cdlm_score", "cdlm_source"):
        if not Span.has_extension(name):
            Span.set_extension(name, default=None)


@functools.lru_cache(maxsize=4)
def load_model(model: str, quantize: str = "none"):  # -> cdlm.CDLM, loaded once per process
    from cdlm.inference.model import CDLM

    return CDLM.from_pretrained(model, quantize=quantize)


class CdlmComponent:
    """Sets ``doc.ents`` and ``doc.spans[spans_key]`` from a cdlm model (see the module doc)."""

    def __init__(
        self,
        nlp: Language,
        name: str,
        model: str,
        domain: str | None,
        threshold: float | None,
        llm: str | None,
        quantize: str,
        batch_size: int,
        spans_key: str,
    ) -> None:
        _register_extensions()
        self.name = name
        self.model = load_model(model, quantize)
        self.domain = self.model.resolve(domain)  # an unknown domain fails at add_pipe
        self.threshold = threshold
        self.llm = None if llm in (None, "none") else llm
        self.batch_size = batch_size
        self.spans_key = spans_key

    def __call__(self, doc: Doc) -> Doc:
        return self._annotate([doc])[0]

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        for docs in minibatch(stream, size=batch_size):
            yield from self._annotate(list(docs))

    def _annotate(self, docs: list[Doc]) -> list[Doc]:
        entities = self.model.predict(
            [doc.text for doc in docs],
            domain=self.domain,
            threshold=self.threshold,
            llm=self.llm,
            batch_size=self.batch_size,
        )
        for doc, ents in zip(docs, entities, strict=True):
            self._set(doc, ents)
        return docs

    def _set(self, doc: Doc, entities: list[dict[str, Any]]) -> None:
        spans: list[Span] = []
        unaligned: list[dict[str, Any]] = []
        for ent in entities:
            span = doc.char_span(
                ent["start"], ent["end"], label=ent["label"], alignment_mode="strict"
            )
            if span is None:
                unaligned.append(ent)
                continue
            span._.cdlm_score = ent["score"]
            span._.cdlm_source = ent["source"]
            spans.append(span)
        doc.ents = spans
        doc.spans[self.spans_key] = SpanGroup(
            doc,
            name=self.spans_key,
            spans=spans,
            attrs={
                "scores": [s._.cdlm_score for s in spans],
                "sources": [s._.cdlm_source for s in spans],
            },
        )
        doc.user_data[USER_DATA] = {"domain": self.domain, "unaligned": unaligned}
        if unaligned:
            logger.warning(
                "cdlm: %d of %d entities do not align with spaCy's tokens and are not in "
                "doc.ents (see doc.user_data['cdlm']['unaligned']): %s",
                len(unaligned),
                len(entities),
                ", ".join(repr(e["text"]) for e in unaligned[:5]),
            )


@Language.factory(
    "cdlm",
    default_config={
        "model": "default",
        "domain": None,
        "threshold": None,
        "llm": None,
        "quantize": "none",
        "batch_size": 32,
        "spans_key": "cdlm",
    },
    assigns=["doc.ents", "doc.spans", "span._.cdlm_score", "span._.cdlm_source"],
)
def make_cdlm(
    nlp: Language,
    name: str,
    model: str,
    domain: str | None,
    threshold: float | None,
    llm: str | None,
    quantize: str,
    batch_size: int,
    spans_key: str,
) -> CdlmComponent:
    """The ``cdlm`` factory (the ``spacy_factories`` entry point)."""
    return CdlmComponent(nlp, name, model, domain, threshold, llm, quantize, batch_size, spans_key)
