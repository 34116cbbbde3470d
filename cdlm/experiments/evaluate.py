"""Scoring a tagger on a labelled split and writing the results files.

``evaluate_checkpoint`` loads a saved tagger, tags one split of its target domain, scores it
with strict IOB2 seqeval (:mod:`cdlm.metrics`) and times the tagging (sentences/s, tokenising
included). ``write_results`` puts the JSON (the record of truth) and a Markdown rendering under
``evals/results/<domain>__<variant>__seed<N>__<split>.{json,md}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cdlm.data.bio import Sentence
from cdlm.metrics import SpanScores, span_scores
from cdlm.results import RESULTS_DIR
from cdlm.results import write_results as write_record

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


class EvalResult(BaseModel):
    """One evaluation: scores, speed and everything needed to reproduce it."""

    domain: str
    variant: str
    split: str
    seed: int
    checkpoint: str
    encoder: str
    scores: SpanScores
    sentences: int
    seconds: float
    sentences_per_s: float
    config: dict[str, Any]
    # From the checkpoint's scores.json when ``cdlm train`` wrote it: best epoch, dev F1 and
    # the wall times of target fine-tuning and of the (possibly cached) source pre-training.
    training: dict[str, Any] | None = None
    provenance: dict[str, Any]


def score_model(
    model: Tagger, sentences: Sequence[Sentence]
) -> tuple[SpanScores, float, list[list[str]]]:
    """Tag ``sentences`` and score them: (scores, seconds spent tagging, predicted tags)."""
    start = time.perf_counter()
    pred = model.predict_tags([s.tokens for s in sentences])
    seconds = time.perf_counter() - start
    scores = span_scores([s.tags for s in sentences], pred)
    return scores, seconds, pred


def evaluate_checkpoint(
    checkpoint: Path | str,
    split: str = "test",
    data_dir: Path | str | None = None,
    domain: str | None = None,
) -> EvalResult:
    """Score the tagger saved in ``checkpoint`` on ``split`` of its target domain (or of
    ``domain``: a CrossNER name or a BIO dataset folder with the same label set)."""
    from cdlm.data.registry import domain_name, load_split
    from cdlm.model.encoder import encoder_label
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp

    model = Tagger.load(checkpoint)
    target = domain or model.config.train.target
    if target is None:
        from cdlm.errors import ConfigError

        raise ConfigError(f"{checkpoint}: the checkpoint names no target domain; pass --domain")
    sentences = load_split(target, split, data_dir)
    scores, seconds, _ = score_model(model, sentences)
    config = model.config.model_dump(mode="json")
    return EvalResult(
        domain=domain_name(target),
        variant=model.config.train.variant,
        split=split,
        seed=model.config.train.seed,
        checkpoint=str(checkpoint),
        encoder=encoder_label(model.encoder_name),
        scores=scores,
        sentences=len(sentences),
        seconds=seconds,
        sentences_per_s=len(sentences) / seconds if seconds > 0 else 0.0,
        config=config,
        training=training_record(checkpoint),
        provenance=stamp(seed=model.config.train.seed, config=config),
    )


def training_record(checkpoint: Path | str) -> dict[str, Any] | None:
    """The training facts of a checkpoint folder (None when it has no ``scores.json``)."""
    scores_file = Path(checkpoint) / "scores.json"
    if not scores_file.is_file():
        return None
    scores = json.loads(scores_file.read_text(encoding="utf-8"))
    keys = ("best_epoch", "target_seconds", "source_checkpoint", "source_cached", "history")
    record: dict[str, Any] = {k: scores.get(k) for k in keys}
    record["dev_f1"] = (scores.get("dev") or {}).get("f1")
    source = scores.get("source_checkpoint")
    meta_file = Path(source) / "config.json" if source else None
    if meta_file is not None and meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        record["source_train_seconds"] = meta.get("train_seconds")
        record["source_train_sentences"] = meta.get("train_sentences")
    return record


def results_stem(result: EvalResult) -> str:
    return f"{result.domain}__{result.variant}__seed{result.seed}__{result.split}"


def scores_markdown(scores: SpanScores) -> str:
    """The per-type table plus the micro row, percentages with one decimal."""
    rows = ["| type | P | R | F1 | gold | predicted |", "|---|---:|---:|---:|---:|---:|"]
    for t in scores.per_type:
        rows.append(
            f"| {t.type} | {100 * t.precision:.1f} | {100 * t.recall:.1f} | {100 * t.f1:.1f} "
            f"| {t.support} | {t.predicted} |"
        )
    rows.append(
        f"| **micro** | **{100 * scores.precision:.1f}** | **{100 * scores.recall:.1f}** "
        f"| **{100 * scores.f1:.1f}** | {scores.support} | {scores.predicted} |"
    )
    return "\n".join(rows)


def write_results(result: EvalResult, results_dir: Path | str = RESULTS_DIR) -> Path:
    """Write ``<stem>.json`` and ``<stem>.md``; returns the JSON path."""
    md = [
        f"# {result.domain} / {result.variant} / seed {result.seed} / {result.split}",
        "",
        f"Strict IOB2 span micro-F1 **{100 * result.scores.f1:.2f}** "
        f"(P {100 * result.scores.precision:.2f}, R {100 * result.scores.recall:.2f}) "
        f"on {result.sentences} sentences; {result.sentences_per_s:.1f} sentences/s.",
        "",
        scores_markdown(result.scores),
        "",
        f"- encoder: `{result.encoder}`",
        f"- checkpoint: `{result.checkpoint}`",
        f"- command: `{result.provenance.get('command', '')}`",
        f"- commit: `{result.provenance.get('commit', '')}`",
        f"- time: {result.provenance.get('time', '')}, {result.provenance.get('machine', '')}",
        "",
    ]
    return write_record(Path(results_dir) / f"{results_stem(result)}.json", result, "\n".join(md))
