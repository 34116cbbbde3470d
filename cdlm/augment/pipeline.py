"""FactMix end to end: generate both kinds at the configured maxima, filter, report, write.

Used by ``cdlm augment`` (writes the set) and ``cdlm train --augment factmix`` (trains on it).
The output BIO file holds the originals first, then the kept semi-facts; the sidecar
``FILE.jsonl`` has one line per semi-fact (its index in the output, origin index, kind, the
replacements) and ``FILE.summary.json`` the counts, the filler, the filter and the provenance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cdlm.augment.context import Filler, context_semifacts
from cdlm.augment.entity import build_entity_base, entity_semifacts
from cdlm.augment.filter import TagPredictor, denoise
from cdlm.augment.progress import Track, no_track
from cdlm.augment.record import Generated
from cdlm.config import AugmentConfig, CdlmConfig
from cdlm.data.bio import Sentence, write_bio
from cdlm.results import atomic_write_text


class KindStats(BaseModel):
    generated: int = 0
    kept: int = 0  # after the filter (= generated when there is no filter)
    short: int = 0  # origins that got fewer than the ratio before filtering


class AugmentStats(BaseModel):
    """Everything ``cdlm augment`` reports: nothing is dropped without being counted here."""

    originals: int
    entity_ratio: int
    context_ratio: int
    seed: int
    entity_base: dict[str, int]  # distinct mentions per type
    extra_base: str | None
    entity: KindStats
    context: KindStats
    sentences_without_entities: int
    no_alternative: dict[str, int]  # spans not swappable because their type has one mention
    sentences_without_words: int  # no alphabetic O word to re-fill
    fills_requested: int
    fills_unusable: int  # filler returned the same word, nothing, or not one word
    filler: str | None
    filler_fallbacks: int  # LLM answers that never validated (see LLMFiller)
    filter: str | None  # the tagger checkpoint used by the denoising filter, None = no filter


@dataclass
class Augmented:
    originals: list[Sentence]
    generated: list[Generated]  # kept semi-facts, in generation order
    stats: AugmentStats

    @property
    def sentences(self) -> list[Sentence]:
        return [*self.originals, *(g.sentence for g in self.generated)]


def make_filler(cfg: CdlmConfig) -> Filler:
    """``augment.mlm`` set: that fill-mask model; otherwise the LLM filler, with the configured
    llama/gpt backend, or the embedded SmolLM2 when ``llm.backend`` is ``none``."""
    from cdlm.augment.context import HFMaskFiller, LLMFiller

    if cfg.augment.mlm:
        return HFMaskFiller(cfg.augment.mlm, top_k=cfg.augment.mlm_top_k)
    from cdlm.llm.factory import make_backend

    llm = cfg.llm if cfg.llm.backend != "none" else cfg.llm.model_copy(update={"backend": "llama"})
    return LLMFiller(make_backend(llm), max_chars=cfg.augment.max_word_chars)


def factmix(
    originals: Sequence[Sentence],
    cfg: AugmentConfig,
    *,
    filler: Filler | None,
    tagger: TagPredictor | None = None,
    extra: Sequence[Sentence] | None = None,
    filter_name: str | None = None,
    track: Track = no_track,
) -> Augmented:
    """Entity- and context-level semi-facts of ``originals`` (filtered when ``tagger`` is given).

    ``filler`` may be None only when ``cfg.context_ratio`` is 0.
    """
    originals = list(originals)
    base = build_entity_base(originals, extra)
    ent, ent_stats = entity_semifacts(
        originals, base, cfg.entity_ratio, seed=cfg.seed, attempts=cfg.attempts_per_sentence
    )
    ctx: list[Generated] = []
    from cdlm.augment.context import ContextStats

    ctx_stats = ContextStats()
    if cfg.context_ratio:
        if filler is None:
            raise ValueError("context_ratio > 0 needs a filler")
        ctx, ctx_stats = context_semifacts(
            originals,
            filler,
            cfg.context_ratio,
            seed=cfg.seed,
            max_words=cfg.context_max_words,
            attempts=cfg.attempts_per_sentence,
            track=track,
        )
    generated = ent + ctx
    kept = denoise(generated, tagger, track) if tagger is not None else generated
    # Group by origin (entity first, then context) so the output reads sentence by sentence.
    kept.sort(key=lambda g: (g.origin, g.kind != "entity"))
    stats = AugmentStats(
        originals=len(originals),
        entity_ratio=cfg.entity_ratio,
        context_ratio=cfg.context_ratio,
        seed=cfg.seed,
        entity_base={t: len(m) for t, m in base.mentions.items()},
        extra_base=cfg.extra_base,
        entity=KindStats(
            generated=len(ent), kept=sum(g.kind == "entity" for g in kept), short=ent_stats.short
        ),
        context=KindStats(
            generated=len(ctx), kept=sum(g.kind == "context" for g in kept), short=ctx_stats.short
        ),
        sentences_without_entities=ent_stats.sentences_without_entities,
        no_alternative=dict(sorted(ent_stats.no_alternative.items())),
        sentences_without_words=ctx_stats.sentences_without_words,
        fills_requested=ctx_stats.fills_requested,
        fills_unusable=ctx_stats.fills_unusable,
        filler=getattr(filler, "name", None) if cfg.context_ratio else None,
        filler_fallbacks=getattr(filler, "fallbacks", 0) if cfg.context_ratio else 0,
        filter=filter_name if tagger is not None else None,
    )
    return Augmented(originals, kept, stats)


def sidecar_path(out: Path) -> Path:
    return out.with_name(out.name + ".jsonl")


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


def write_augmented(out: Path, aug: Augmented, provenance: dict[str, Any]) -> None:
    """Write the BIO file, its sidecar JSONL and the summary JSON (each atomically)."""
    out = Path(out)
    write_bio(out, aug.sentences)
    first = len(aug.originals)
    lines = [
        json.dumps(g.sidecar(first + i), ensure_ascii=False) for i, g in enumerate(aug.generated)
    ]
    atomic_write_text(sidecar_path(out), "".join(line + "\n" for line in lines))
    summary = {**provenance, "stats": aug.stats.model_dump()}
    atomic_write_text(summary_path(out), json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
