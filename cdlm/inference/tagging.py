"""Raw text in, tagger entities with character offsets out.

``tag_texts`` is the tagging step on its own (tokens with offsets, word-level probabilities,
decoded tags, entities) so the LLM reasoning stage can start from it
(:mod:`cdlm.inference.predict`); it is also what ``cdlm predict`` prints without ``--llm``.

Each input text is tagged as one sequence (long texts are windowed by the tagger, never cut).
An entity's ``score`` is the mean probability of the tags chosen for its words.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdlm.data.spans import Entity, bio_spans
from cdlm.data.text import Token, tokenize

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


@dataclass
class TaggedText:
    """One input text after tagging."""

    text: str
    tokens: list[Token]
    probs: np.ndarray  # [W, L] softmax over the tagger's labels
    tags: list[str]
    entities: list[Entity]


def default_checkpoint() -> Path:
    """What ``cdlm train --target politics`` writes by default."""
    from cdlm.config import load_config
    from cdlm.runs import default_out_dir

    return default_out_dir(load_config(None, {"train.target": "politics"}))


@functools.lru_cache(maxsize=2)
def _load(path: str) -> Tagger:
    from cdlm.model.tagger import Tagger

    return Tagger.load(path)


def load_tagger(checkpoint: Path | str | None = None) -> Tagger:
    """The tagger in ``checkpoint`` (default: the politics baseline); loaded once per process."""
    return _load(str(Path(checkpoint or default_checkpoint()).resolve()))


def optional_tagger(checkpoint: Path | str | None) -> Tagger | None:
    """The tagger at ``checkpoint``; without one, the default checkpoint if it was trained, else
    ``None`` (the LLM-only mode of ``--llm``)."""
    if checkpoint is not None:
        return load_tagger(checkpoint)
    path = default_checkpoint()
    return load_tagger(path) if (path / "config.json").is_file() else None


def entities_from(
    text: str, tokens: list[Token], probs: np.ndarray, tags: list[str], labels: list[str]
) -> list[Entity]:
    """The tagger's entities over the text: ``text[start:end]`` is the entity's text by
    construction; its score is the mean probability of the tags chosen for its words."""
    index = {label: i for i, label in enumerate(labels)}
    out = []
    for span in bio_spans(tags):
        start, end = tokens[span.start].start, tokens[span.end - 1].end
        score = float(np.mean([probs[w, index[tags[w]]] for w in range(span.start, span.end)]))
        out.append(
            Entity(start, end, text[start:end], span.label, score, "tagger", span.start, span.end)
        )
    return out


def tag_texts(model: Tagger, texts: list[str]) -> list[TaggedText]:
    """Tokenise, tag and decode every text; nothing is dropped (empty texts give no tokens)."""
    from cdlm.model.decode import decode

    token_lists = [tokenize(t) for t in texts]
    probs = model.predict_proba([[tok.text for tok in toks] for toks in token_lists])
    out = []
    for text, toks, p in zip(texts, token_lists, probs, strict=True):
        tags = decode(p, model.labels, model.config.tagger.decode)
        out.append(
            TaggedText(text, toks, p, tags, entities_from(text, toks, p, tags, model.labels))
        )
    return out


def tagger_record(tagged: TaggedText) -> dict[str, Any]:
    """``{"text", "entities": [{start, end, text, label, score, source}]}`` of one text (the
    ``--format jsonl`` output of the tagger alone)."""
    return {"text": tagged.text, "entities": [e.to_json() for e in tagged.entities]}


def conll_lines(tagged: TaggedText) -> list[str]:
    """``token<TAB>tag`` lines of one text (the ``--format conll`` output)."""
    return [f"{tok.text}\t{tag}" for tok, tag in zip(tagged.tokens, tagged.tags, strict=True)]
