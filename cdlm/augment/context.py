"""Context-level semi-facts: re-fill one or two non-entity words, leaving every entity untouched.

Only ``O`` tokens that are alphabetic words are masked (punctuation and numbers are left alone:
an MLM "replacing" a comma or a year mostly produces noise). When a sentence gets two words
replaced, each is predicted with the rest of the ORIGINAL sentence as context (one batch of
fills per dataset instead of two dependent rounds); the sidecar records both edits.

Two fillers implement :class:`Filler`:

- :class:`HFMaskFiller` (``--mlm NAME_OR_PATH``): a Hugging Face fill-mask model, as in the paper
  (bert-base-cased). The first of its ``top_k`` predictions that is a new single word wins.
- :class:`LLMFiller` (default, offline): the embedded SmolLM2 (or the configured ``llm`` backend)
  through :func:`cdlm.llm.factory.make_backend`, given the cloze sentence (the ``fill.jinja``
  prompt, a registered stage) and answering in a pydantic schema whose string is bounded and must
  match a single-word pattern (the grammar enforces it during decoding, pydantic validates it). The
  embedded MiniLM encoder has no MLM head, which is why the default install fills with the LLM.
  Unparseable answers are counted (``LLMFiller.fallbacks``) and that position is simply not used.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cdlm.augment.progress import Track, no_track
from cdlm.augment.record import Generated, Replacement
from cdlm.data.bio import OUTSIDE, Sentence
from cdlm.llm.base import LLMOutputError, Message
from cdlm.reasoning.fill import FILL, fill_variables
from cdlm.reasoning.stages import load_prompts
from cdlm.reasoning.templates import PromptSet

WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")
FillRequest = tuple[tuple[str, ...], int]  # (sentence tokens, position to re-fill)


def is_new_word(candidate: str, original: str) -> bool:
    """A usable fill: one alphabetic word that is not the original (ignoring case)."""
    return bool(WORD.match(candidate)) and candidate.casefold() != original.casefold()


class Filler(Protocol):
    """Predicts words for a masked position; candidates best first (may be empty)."""

    name: str

    def fill(self, requests: Sequence[FillRequest], track: Track = no_track) -> list[list[str]]: ...


class HFMaskFiller:
    """A Hugging Face fill-mask pipeline (``--mlm``), e.g. ``bert-base-cased`` as in FactMix."""

    def __init__(self, name_or_path: str, top_k: int = 5, batch_size: int = 16) -> None:
        from transformers import pipeline

        from cdlm.errors import ModelNotFoundError

        try:
            self._pipe = pipeline("fill-mask", model=name_or_path, top_k=top_k)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"--mlm {name_or_path}: cannot load a fill-mask model ({str(exc).splitlines()[0]})"
            ) from None
        self.name = f"hf:{name_or_path}"
        self._batch = batch_size

    def fill(self, requests: Sequence[FillRequest], track: Track = no_track) -> list[list[str]]:
        mask = self._pipe.tokenizer.mask_token
        texts = [
            " ".join(mask if i == pos else tok for i, tok in enumerate(tokens))
            for tokens, pos in requests
        ]
        out: list[list[str]] = []
        for start in track(
            range(0, len(texts), self._batch), "MLM fills", -(-len(texts) // self._batch)
        ):
            chunk = texts[start : start + self._batch]
            preds = self._pipe(chunk, batch_size=self._batch)
            if chunk and preds and isinstance(preds[0], dict):  # a single text: not nested
                preds = [preds]
            out += [[p["token_str"].strip() for p in pred] for pred in preds]
        return out


class LLMFiller:
    """One word from a chat LLM (default: the embedded SmolLM2), schema-constrained.

    The prompt is ``fill.jinja`` of the prompts folder (the ``augment_fill`` stage of
    :mod:`cdlm.reasoning.fill`): a cloze (the word replaced by ``___``, as an MLM sees it) with a
    few worked examples as earlier chat turns. It is still a demo-quality filler (it often
    proposes a word from the sentence or from the examples); pass ``--mlm`` for paper-quality
    fills. A fill equal to the original word is not used (counted as unusable).
    """

    def __init__(self, backend, max_chars: int = 24, prompts: PromptSet | None = None) -> None:
        self._backend = backend
        self._schema = FILL.schema(max_chars)
        self._prompts = prompts or load_prompts()
        self.name = (
            f"llm:{getattr(backend, 'name', '?')}:{Path(getattr(backend, 'model', '?')).name}"
        )
        self.fallbacks = 0  # answers that stayed invalid after the backend's repair retries

    def messages(self, tokens: Sequence[str], pos: int) -> list[Message]:
        return self._prompts.render(FILL.template, fill_variables(tokens, pos))

    def fill(self, requests: Sequence[FillRequest], track: Track = no_track) -> list[list[str]]:
        out: list[list[str]] = []
        for tokens, pos in track(requests, "LLM fills", len(requests)):
            try:
                result = self._backend.complete(
                    self.messages(tokens, pos), self._schema, stage=FILL.name
                )
            except LLMOutputError:
                self.fallbacks += 1
                out.append([])
                continue
            out.append([result.value.word.strip()])
        return out


def eligible_positions(sent: Sentence) -> list[int]:
    """Token indices a context semi-fact may change: ``O`` tags on alphabetic words only."""
    return [
        i
        for i, (tok, tag) in enumerate(zip(sent.tokens, sent.tags, strict=True))
        if tag == OUTSIDE and tok.isalpha()
    ]


@dataclass
class ContextStats:
    generated: int = 0
    sentences_without_words: int = 0  # no eligible O word at all
    fills_requested: int = 0
    fills_unusable: int = 0  # filler gave no new single word for that position
    short: int = 0  # sentences that got fewer than ``ratio`` semi-facts


def _plan(sent: Sentence, ratio: int, max_words: int, rng: random.Random, attempts: int):
    """Distinct sets of 1..max_words positions to re-fill, at most ``ratio`` of them."""
    positions = eligible_positions(sent)
    plans: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(ratio * attempts):
        if len(plans) == ratio or not positions:
            break
        k = rng.randint(1, min(max_words, len(positions)))
        plan = tuple(sorted(rng.sample(positions, k)))
        if plan not in seen:
            seen.add(plan)
            plans.append(plan)
    return plans


def context_semifacts(
    sentences: Sequence[Sentence],
    filler: Filler,
    ratio: int,
    *,
    seed: int,
    max_words: int = 2,
    attempts: int = 4,
    track: Track = no_track,
) -> tuple[list[Generated], ContextStats]:
    """Up to ``ratio`` distinct context-level semi-facts per sentence (1..max_words O words)."""
    stats = ContextStats()
    plans: list[list[tuple[int, ...]]] = []
    requests: dict[tuple[int, int], int] = {}  # (sentence, position) -> request number
    for index, sent in enumerate(sentences):
        rng = random.Random(f"{seed}:context:{index}")
        if not eligible_positions(sent):
            stats.sentences_without_words += 1
        sent_plans = _plan(sent, ratio, max_words, rng, attempts) if ratio else []
        plans.append(sent_plans)
        for plan in sent_plans:
            for pos in plan:
                requests.setdefault((index, pos), len(requests))
    order = list(requests)
    stats.fills_requested = len(order)
    answers = filler.fill([(sentences[i].tokens, pos) for i, pos in order], track)
    fill: dict[tuple[int, int], str | None] = {}
    for (i, pos), cands in zip(order, answers, strict=True):
        original = sentences[i].tokens[pos]
        fill[(i, pos)] = next((c for c in cands if is_new_word(c, original)), None)
        stats.fills_unusable += fill[(i, pos)] is None

    out: list[Generated] = []
    for index, (sent, sent_plans) in enumerate(zip(sentences, plans, strict=True)):
        seen: set[tuple[str, ...]] = {sent.tokens}
        made = 0
        for plan in sent_plans:
            words = [fill[(index, pos)] for pos in plan]
            if any(w is None for w in words):
                continue
            tokens = list(sent.tokens)
            edits = []
            for pos, word in zip(plan, words, strict=True):
                tokens[pos] = word
                edits.append(
                    Replacement(
                        start=pos, end=pos + 1, old=sent.tokens[pos], new=word, label=OUTSIDE
                    )
                )
            if tuple(tokens) in seen:
                continue
            seen.add(tuple(tokens))
            new = Sentence(tuple(tokens), sent.tags, source=sent.source, line=sent.line)
            out.append(Generated(new, index, "context", tuple(edits)))
            made += 1
        if ratio and made < ratio:
            stats.short += 1
    stats.generated = len(out)
    return out, stats
