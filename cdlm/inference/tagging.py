"""Raw text in, the tagger's view of it out: tokens with offsets, word probabilities, tags,
candidates and entities.

``tag_texts`` is the tagging step of :class:`cdlm.inference.model.CDLM` (and the start of its
LLM stage); ``tag_tokens`` the same for pre-tokenised sentences (BIO files, evaluation). Each
input text is tagged as one sequence (long texts are windowed by the tagger, never cut). A token
of junk characters only (U+0001, U+FFFE ...) is ``O`` whatever the tagger says
(:func:`outside_junk`). ``types`` restricts the decoding to some entity types: the other
types' B/I probabilities are set to zero and each word's row renormalised before the Viterbi
decoding, so a span the tagger saw as another type gets the best allowed type or none.

An entity's ``score`` is its span's probability of its type: the mean over its words of
``p(B-type) + p(I-type)`` (the candidates' ``confidence``, :mod:`cdlm.reasoning.candidates`), so
the number a user thresholds is the number the LLM router reads.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cdlm.data.spans import OUTSIDE, Entity, label_types, tag_type
from cdlm.data.text import Token, is_junk, tokenize
from cdlm.errors import ConfigError
from cdlm.reasoning.candidates import Candidate, Doc, extract_candidates
from cdlm.reasoning.pipeline import tagger_entities

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


@dataclass
class TaggedText:
    """One input text after tagging."""

    text: str
    tokens: list[Token]
    probs: np.ndarray  # [W, L] softmax over the tagger's labels
    tags: list[str]
    labels: list[str]  # the tagger's BIO labels (the columns of probs)

    @functools.cached_property
    def doc(self) -> Doc:
        return doc_of(self.text, self.tokens)

    def candidates(self, top_k: int = 3, missed_o_max: float = 0.0) -> list[Candidate]:
        """The tagger's spans (and, with ``missed_o_max`` > 0, the likely missed ones) with
        their top-k types: what the router and the LLM stages see."""
        if not self.tokens:
            return []
        return extract_candidates(
            self.doc,
            self.probs,
            self.labels,
            tags=self.tags,
            top_k=top_k,
            missed_o_max=missed_o_max,
        )

    @property
    def entities(self) -> list[Entity]:
        return tagger_entities(self.doc, self.candidates())


def doc_of(text: str, tokens: Sequence[Token]) -> Doc:
    return Doc(text, tuple(t.text for t in tokens), tuple((t.start, t.end) for t in tokens))


def outside_junk(probs: np.ndarray, tokens: Sequence[Token], labels: Sequence[str]) -> np.ndarray:
    """``probs`` with the row of every junk token (:func:`cdlm.data.text.is_junk`: control,
    format, unassigned... characters only) set to ``O``: the tagger's row for such a token is
    noise, so it never starts, continues or is a likely-missed entity."""
    junk = [i for i, tok in enumerate(tokens) if is_junk(tok.text)]
    if not junk:
        return probs
    out = probs.copy()
    out[junk] = 0.0
    out[junk, list(labels).index(OUTSIDE)] = 1.0
    return out


def restrict(probs: np.ndarray, labels: Sequence[str], types: Sequence[str]) -> np.ndarray:
    """``probs`` with every type outside ``types`` at zero, rows renormalised."""
    keep = np.array([(etype := tag_type(lab)) is None or etype in types for lab in labels])
    out = np.where(keep, probs, 0.0)
    return out / np.clip(out.sum(axis=-1, keepdims=True), 1e-12, None)


def check_types(types: Sequence[str], labels: Sequence[str], domain: str) -> None:
    """An unknown type is an error naming the known ones (it could never be predicted)."""
    known = label_types(labels)
    unknown = [t for t in types if t not in known]
    if unknown:
        raise ConfigError(
            f"labels: {', '.join(map(repr, unknown))} not in domain {domain!r} "
            f"(its types: {', '.join(known)})"
        )


def entities_from(
    text: str, tokens: list[Token], probs: np.ndarray, tags: list[str], labels: list[str]
) -> list[Entity]:
    """The tagger's entities over the text (``text[start:end]`` is the entity's text by
    construction; the score is the span's probability of its type)."""
    return TaggedText(text, tokens, probs, tags, list(labels)).entities


def tag_texts(
    model: Tagger,
    texts: Sequence[str],
    types: Sequence[str] | None = None,
    batch_size: int | None = None,
    max_padding: float | None = None,
) -> list[TaggedText]:
    """Tokenise, tag and decode every text; nothing is dropped (empty texts give no tokens).
    ``types``: decode only these entity types (see the module docstring); ``batch_size`` and
    ``max_padding``: the tagger's forward batches (``predict.max_padding``)."""
    token_lists = [tokenize(t) for t in texts]
    return _tag(model, list(texts), token_lists, types, batch_size, max_padding)


def tag_tokens(
    model: Tagger,
    token_lists: Sequence[Sequence[str]],
    types: Sequence[str] | None = None,
    batch_size: int | None = None,
    max_padding: float | None = None,
) -> list[TaggedText]:
    """:func:`tag_texts` for pre-tokenised sentences (BIO files): each text is its tokens joined
    by single spaces (as :meth:`Doc.from_tokens` makes it), so offsets point into that text and
    every later step is the text path's."""
    texts, tokens = [], []
    for words in token_lists:
        toks, pos = [], 0
        for word in words:
            toks.append(Token(word, pos, pos + len(word)))
            pos += len(word) + 1
        texts.append(" ".join(words))
        tokens.append(toks)
    return _tag(model, texts, tokens, types, batch_size, max_padding)


def _tag(
    model: Tagger,
    texts: list[str],
    token_lists: list[list[Token]],
    types: Sequence[str] | None,
    batch_size: int | None,
    max_padding: float | None,
) -> list[TaggedText]:
    """Tag and decode tokenised texts: the step text and token inputs share."""
    from cdlm.model.decode import decode

    # A lone surrogate (valid in a Python str, e.g. from JSON "\ud800") cannot reach the
    # encoder's tokenizer; it is junk, tagged O below, so the encoder sees U+FFFD instead.
    words = [[_encodable(tok.text) for tok in toks] for toks in token_lists]
    probs = model.predict_proba(words, batch_size, max_padding)
    out = []
    for text, toks, p in zip(texts, token_lists, probs, strict=True):
        p = outside_junk(p, toks, model.labels)
        if types is not None:
            p = restrict(p, model.labels, types)
        tags = decode(p, model.labels, model.config.tagger.decode)
        out.append(TaggedText(text, toks, p, tags, list(model.labels)))
    return out


def _encodable(word: str) -> str:
    """``word`` with any lone surrogate replaced by U+FFFD (the word itself otherwise)."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in word)
    return word


def conll_lines(tagged: TaggedText) -> list[str]:
    """``token<TAB>tag`` lines of one text (the ``--format conll`` output)."""
    return [f"{tok.text}\t{tag}" for tok, tag in zip(tagged.tokens, tagged.tags, strict=True)]
