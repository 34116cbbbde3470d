"""Self-training on unlabeled text (docs/DESIGN.md, "Multi-source and unlabeled text").

Who it is for: a practitioner with 20-50 labelled sentences and a pile of unlabeled text of the
same domain. A round of self-training:

1. **Labelling.** The teacher (a ``cdlm train`` run, a given checkpoint, or in later rounds the
   previous student) tags every pool text through the tagger's batched probability path
   (length-sorted batches bounded by ``predict.max_padding``). Per text it writes the decoded
   tags, each word's probability of its tag and of ``O``, and each span's type options to
   ``pseudo/round<R>.jsonl`` in the run folder, a chunk at a time (whole lines, appended and
   synced). A run that finds the file labels only the texts not in it yet; a file written by
   another teacher or for another pool is started afresh.
2. **Selection.** A span's confidence is the *lowest* probability its words give their tag. Min
   rather than mean: a span is as reliable as its weakest word, and a boundary word at 0.6
   beside two at 0.99 is exactly the error a mean hides. Spans at or above
   ``selftrain.threshold`` (``type_thresholds`` per type) are kept. A word outside the kept
   spans counts as ``O`` only where the teacher's p(O) reaches the threshold; elsewhere (the
   words of rejected spans, hesitant words) it carries no loss: it teaches nothing rather than
   a guessed ``O``. A text left with no word carrying loss is dropped.
   ``verify="llm"``: spans scored in ``[low, threshold)`` go to the existing expert vote
   (:func:`cdlm.reasoning.voting.vote`, the configured LLM, by default the embedded SmolLM2)
   and are kept with the type the vote decides, dropped on "none" or when no expert answered;
   calls, tokens and seconds are counted (:mod:`cdlm.llm.usage`) and returned. SmolLM2 only
   shows the cost and the plumbing: whether verified spans help needs a real LLM.
3. **Student.** Trained from the source model by the target recipe of
   :mod:`cdlm.experiments.train` on gold + pseudo: gold and pseudo sentences go in separate
   batches, interleaved in a seeded order; a pseudo batch's loss (every term) is multiplied by
   ``selftrain.weight`` and its no-loss words are left out (:class:`PseudoView`). Dev F1 picks
   the epoch, as in every recipe.

Gold labels of a pool never reach a tagger: a pool is :class:`PoolText` objects (tokens and
where they came from; there is no tags field), and :func:`pool_from_split` strips a split to that.

:func:`choose_on_dev` tries the grids of ``selftrain`` (threshold x weight x rounds; per-type
thresholds as an option) and keeps the best dev F1, the teacher alone included (rounds 0), with
every point recorded; :func:`self_train` runs the values as set. The test split is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel

from cdlm.config import CdlmConfig, CorpusConfig, SelfTrainConfig, llm_run_config
from cdlm.data.bio import Sentence
from cdlm.data.corpus import input_format, read_records, record_problem
from cdlm.data.spans import OUTSIDE, Span, bio_spans, label_types
from cdlm.data.text import Token, tokenize
from cdlm.errors import ConfigError, DataError
from cdlm.experiments.loop import (
    EpochPlan,
    batch_stream,
    n_batches,
    plain_progress,
    progress_bars,
)
from cdlm.experiments.train import (
    EpochLog,
    TargetData,
    fine_tuner,
    fit_plan,
    load_target,
    pretrain_source,
    train,
)
from cdlm.llm.usage import UsageLog
from cdlm.metrics import SpanScores
from cdlm.results import atomic_write_text, write_json
from cdlm.runs import saved_config, target_of, training_view

if TYPE_CHECKING:
    import numpy as np

    from cdlm.model.tagger import Batch, Tagger, TaggerOutput
    from cdlm.reasoning.candidates import Candidate, Doc
    from cdlm.reasoning.stage import Task

IGNORE_TAG = "<no-loss>"  # a pseudo-labelled word that carries no loss
LABEL_CHUNK = 512  # texts per labelling step: one file append, one progress tick
ROUND_FILE = "round.json"  # a finished round's record, beside its student


# --- the pool ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolText:
    """One unlabeled text as tokens, and where it came from (``FILE:LINE``). No tags field at
    all, so a split's gold labels cannot ride along into training."""

    tokens: tuple[str, ...]
    source: str = ""


def read_pool(path: Path | str, max_chars: int = CorpusConfig().max_text_chars) -> list[PoolText]:
    """The texts of a ``.txt`` (one a line) or JSON Lines (``{"text": ...}`` a line) file,
    tokenised as ``cdlm predict`` tokenises; a bad line is one ``FILE:LINE`` error, texts
    without a word are skipped, and a pool with no text is an error (not a silent plain run)."""
    name = str(path)
    out = []
    for number, _, record in read_records(name, input_format(name)):
        problem = record_problem(record, max_chars)
        if problem is not None:
            raise DataError(f"{name}:{number}: {problem}")
        words = tuple(t.text for t in tokenize(record["text"]))
        if words:
            out.append(PoolText(words, f"{name}:{number}"))
    if not out:
        raise DataError(f"{name}: the unlabeled pool holds no text (self-training needs some)")
    return out


def pool_from_split(
    sentences: Sequence[Sentence], exclude: Sequence[Sentence] = ()
) -> list[PoolText]:
    """The sentences not in ``exclude`` (a K-shot run's gold sample) with their labels
    removed: tokens and where they came from only."""
    skip = set(exclude)
    return [
        PoolText(tuple(s.tokens), f"{s.source}:{s.line}" if s.source else f"sentence {k + 1}")
        for k, s in enumerate(sentences)
        if s not in skip and s.tokens
    ]


def text_key(tokens: Sequence[str]) -> str:
    """A short digest of a text's tokens: pseudo-label records name their text by it."""
    blob = "\x1f".join(tokens).encode("utf-8", "surrogatepass")
    return hashlib.sha1(blob).hexdigest()[:16]


def pool_digest(pool: Sequence[PoolText]) -> str:
    """The digest of a whole pool, in order (a label file of another pool is not resumed)."""
    digest = hashlib.sha256()
    for text in pool:
        digest.update(text_key(text.tokens).encode() + b"\n")
    return digest.hexdigest()[:16]


def resolve_pool(
    pool: Sequence[PoolText] | Path | str | None, config: CdlmConfig, data: TargetData,
    data_dir: Path | str | None,
) -> tuple[list[PoolText], str]:  # fmt: skip
    """The pool texts (at most ``selftrain.max_pool``) and the name the config records: a
    file's path, ``"split"`` (the rest of the target's train split, labels removed), or the
    digest of a pool handed over in memory."""
    from cdlm.data.registry import load_split

    spec = pool if pool is not None else config.selftrain.pool
    if spec is None:
        raise ConfigError("selftrain.pool: no unlabeled pool given (a text or JSONL file)")
    if isinstance(spec, str | Path) and str(spec) == "split":
        full = load_split(target_of(config), "train", data_dir)
        texts, name = pool_from_split(full, exclude=data.train), "split"
    elif isinstance(spec, str | Path):
        texts, name = read_pool(spec), str(spec)
    else:
        texts, name = list(spec), ""
    texts = texts[: config.selftrain.max_pool] if config.selftrain.max_pool else texts
    if not texts:
        where = f" {name}" if name else ""
        raise DataError(f"selftrain.pool: the unlabeled pool{where} holds no text")
    return texts, name or config.selftrain.pool or f"sha256:{pool_digest(texts)}"


# --- labelling -----------------------------------------------------------------------------


class Scored(NamedTuple):
    """A teacher's span, its confidence (lowest word probability) and its type options."""

    span: Span
    score: float
    options: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Labelled:
    """One pool text as its teacher saw it: decoded tags, each word's probability of its tag
    and of ``O`` (rounded to 4 places, as stored), each span's type options ("none" last)."""

    index: int
    tags: tuple[str, ...]
    tag_prob: tuple[float, ...]
    o_prob: tuple[float, ...]
    options: tuple[tuple[tuple[str, float], ...], ...]

    def scored(self) -> list[Scored]:
        """The spans with their confidence: the min over their words (module docstring)."""
        spans = bio_spans(self.tags)
        return [
            Scored(s, min(self.tag_prob[s.start : s.end]), opts)
            for s, opts in zip(spans, self.options, strict=True)
        ]

    def to_json(self, key: str) -> dict[str, Any]:
        return {
            "i": self.index, "key": key, "tags": list(self.tags), "p": list(self.tag_prob),
            "o": list(self.o_prob), "opts": [[list(o) for o in opts] for opts in self.options],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Labelled:
        options = tuple(tuple((str(t), float(p)) for t, p in opts) for opts in data["opts"])
        return cls(
            int(data["i"]), tuple(data["tags"]), tuple(map(float, data["p"])),
            tuple(map(float, data["o"])), options,
        )  # fmt: skip


def labelled(
    index: int, words: Sequence[str], probs: np.ndarray, labels: list[str], config: CdlmConfig
) -> Labelled:
    """A text's record from the teacher's word probabilities ``probs[W, L]``: tags decoded as
    the tagger decodes (``tagger.decode``), options as the LLM router offers them."""
    from cdlm.model.decode import decode
    from cdlm.reasoning.candidates import Doc, extract_candidates

    tags = decode(probs, labels, config.tagger.decode)
    col = {label: j for j, label in enumerate(labels)}
    cands = extract_candidates(
        Doc.from_tokens(list(words)), probs, labels, tags=tags,
        top_k=config.reasoning.top_k, missed_o_max=0.0,
    )  # fmt: skip
    return Labelled(
        index,
        tuple(tags),
        tuple(round(float(probs[k, col[t]]), 4) for k, t in enumerate(tags)),
        tuple(round(float(p), 4) for p in probs[:, col[OUTSIDE]]),
        tuple(tuple((o.type, o.prob) for o in c.options) for c in cands),
    )


def label_texts(
    tagger: Tagger, texts: Sequence[Sequence[str]], indices: Sequence[int], config: CdlmConfig
) -> list[Labelled]:
    """The teacher's records of ``texts``: one batched probability pass (sorted by length, the
    forward batches bounded by ``predict.max_padding``); junk words are ``O`` as in predict."""
    from cdlm.inference.tagging import outside_junk

    words = [list(t) for t in texts]
    probs = tagger.predict_proba(
        words, config.train.eval_batch_size, max_padding=config.predict.max_padding
    )
    out = []
    for index, w, p in zip(indices, words, probs, strict=True):
        p = outside_junk(p, [Token(x, 0, len(x)) for x in w], tagger.labels)
        out.append(labelled(index, w, p, tagger.labels, config))
    return out


def file_digest(path: Path) -> str:
    """A digest of a file's bytes (a teacher is named by its weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def read_labels(path: Path, header: dict[str, Any], keys: Sequence[str]) -> dict[int, Labelled]:
    """The records already in a label file, by pool index. A missing file, or one of another
    teacher or pool, starts afresh with ``header``; a torn last line (a kill mid-write) is cut
    off; a complete line that is not a record is a ``FILE:LINE`` error."""
    raw = path.read_bytes() if path.is_file() else b""
    lines = raw.split(b"\n")
    if len(lines) < 2 or _header(lines[0]) != header:
        if raw:
            print(f"note: {path} was labelled by another teacher or pool: labelling afresh",
                  file=sys.stderr)  # fmt: skip
        atomic_write_text(path, json.dumps({"header": header}) + "\n")
        return {}
    if lines[-1]:  # no newline after the last line: a torn write, cut off
        with open(path, "r+b") as fh:
            fh.truncate(len(raw) - len(lines[-1]))
    done: dict[int, Labelled] = {}
    for number, line in enumerate(lines[1:-1], start=2):
        try:
            data = json.loads(line)
            lab = Labelled.from_json(data)
            if not 0 <= lab.index < len(keys) or data["key"] != keys[lab.index]:
                raise ValueError("names no text of this pool")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{path}:{number}: not a pseudo-label record ({exc}); delete the file to "
                "label the pool afresh"
            ) from None
        done.setdefault(lab.index, lab)
    return done


def _header(line: bytes) -> Any:
    try:
        return json.loads(line).get("header")
    except (ValueError, AttributeError):
        return None


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines in one write, synced: a kill leaves at most one torn last line."""
    with open(path, "a", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(line + "\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class LabelPass:
    """A labelling pass: every pool text's record (pool order) and what this call did."""

    labelled: list[Labelled]
    resumed: int  # records read back from the file
    seconds: float  # spent labelling the rest


def label_pool(
    teacher: Path, pool: Sequence[PoolText], path: Path, config: CdlmConfig,
    *, progress: bool = True, chunk: int = LABEL_CHUNK,
) -> LabelPass:  # fmt: skip
    """Label every pool text with ``teacher`` into ``path`` (resumable, see
    :func:`read_labels`); longest-last order, so each chunk's batches pad little."""
    from cdlm.model.tagger import Tagger

    keys = [text_key(t.tokens) for t in pool]
    header = {
        "teacher": file_digest(teacher / "model.safetensors"), "pool": pool_digest(pool),
        "decode": config.tagger.decode, "top_k": config.reasoning.top_k,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_labels(path, header, keys)
    resumed = len(done)
    todo = sorted((i for i in range(len(pool)) if i not in done), key=lambda i: len(pool[i].tokens))
    start = time.perf_counter()
    if todo:
        tagger = Tagger.load(teacher)
        with progress_bars(progress) as bar:
            task = bar.add_task("labelling pool", total=len(pool), completed=resumed, status="")
            for k in range(0, len(todo), chunk):
                idx = todo[k : k + chunk]
                new = label_texts(tagger, [pool[i].tokens for i in idx], idx, config)
                append_lines(path, [json.dumps(r.to_json(keys[r.index])) for r in new])
                done.update((r.index, r) for r in new)
                rate = (k + len(idx)) / max(time.perf_counter() - start, 1e-9)
                bar.update(task, advance=len(idx), status=f"{rate:.0f} texts/s")
                if plain_progress(bar):
                    bar.console.print(f"labelling pool: {len(done)}/{len(pool)} {rate:.0f}/s")
    return LabelPass([done[i] for i in range(len(pool))], resumed, time.perf_counter() - start)


# --- selection -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What selection reads: the threshold (per type where given), and the low end of the band
    that goes to the LLM vote (None: no vote; spans below the threshold are dropped)."""

    threshold: float
    type_thresholds: Mapping[str, float] = field(default_factory=dict)
    low: float | None = None

    def bar(self, etype: str) -> float:
        return self.type_thresholds.get(etype, self.threshold)

    def sort(self, lab: Labelled) -> tuple[list[Scored], list[Scored]]:
        """(kept, uncertain) spans of a text: at or above its type's bar, and in ``[low, bar)``."""
        kept, uncertain = [], []
        for s in lab.scored():
            if s.score >= self.bar(s.span.label):
                kept.append(s)
            elif self.low is not None and s.score >= self.low:
                uncertain.append(s)
        return kept, uncertain


def pseudo_tags(lab: Labelled, kept: Sequence[Span], threshold: float) -> tuple[str, ...] | None:
    """The training tags of a text: the kept spans, ``O`` where p(O) reaches ``threshold``,
    :data:`IGNORE_TAG` elsewhere; None when no word is left carrying loss."""
    tags = [OUTSIDE if p >= threshold else IGNORE_TAG for p in lab.o_prob]
    for span in kept:
        tags[span.start] = f"B-{span.label}"
        tags[span.start + 1 : span.end] = [f"I-{span.label}"] * (span.end - span.start - 1)
    return None if all(t == IGNORE_TAG for t in tags) else tuple(tags)


class SelectionStats(BaseModel):
    """What one selection kept, in spans and words."""

    texts: int = 0  # pool texts read
    sentences: int = 0  # pseudo-labelled sentences that join training
    kept: int = 0  # spans kept at or above their threshold
    uncertain: int = 0  # spans in the vote's band (verify="llm")
    verified: int = 0  # of those, kept by the vote
    retyped: int = 0  # of those, kept with another type than the tagger's
    outside_words: int = 0  # words trained as O
    ignored_words: int = 0  # words carrying no loss


def candidate(cid: int, doc: Doc, scored: Scored) -> Candidate:
    """A teacher's span as the vote sees it (the router's options, the tagger's decision)."""
    from cdlm.reasoning.candidates import Candidate, Option

    s = scored.span
    options = [Option(t, p) for t, p in scored.options]
    own = next((o.prob for o in options if o.type == s.label), 0.0)
    other = max((o.prob for o in options if o.type != s.label), default=0.0)
    cs, ce = doc.char_span(s.start, s.end)
    return Candidate(cid, s.start, s.end, doc.text[cs:ce], cs, ce, options, "span", s.label,
                     own, own - other)  # fmt: skip


def vote_spans(
    task: Task, items: Sequence[tuple[Sequence[str], Sequence[Scored]]]
) -> list[list[Span]]:
    """Per text, the uncertain spans the expert vote keeps, with the type it decides (a span
    voted "none", or on which no expert answered, is dropped)."""
    from cdlm.reasoning.candidates import NONE, Doc
    from cdlm.reasoning.voting import vote

    def one(item: tuple[Sequence[str], Sequence[Scored]]) -> list[Span]:
        tokens, spans = item
        if not spans:
            return []
        doc = Doc.from_tokens(list(tokens))
        decided = vote(task, doc, [candidate(k, doc, s) for k, s in enumerate(spans)], []).decisions
        return [
            Span(s.span.start, s.span.end, decided[k][0])
            for k, s in enumerate(spans)
            if k in decided and decided[k][0] != NONE
        ]

    return list(task.map(one, items))


def select_pseudo(
    labs: Sequence[Labelled], pool: Sequence[PoolText], rule: Rule, task: Task | None = None
) -> tuple[list[Sentence], SelectionStats]:
    """The pseudo-labelled sentences of a labelling pass under ``rule`` (the uncertain spans
    through the vote when there is a ``task``), and what was kept."""
    stats = SelectionStats(texts=len(labs))
    sorted_spans = [rule.sort(lab) for lab in labs]
    voted: list[list[Span]] = [[] for _ in labs]
    if task is not None and rule.low is not None:
        voted = vote_spans(task, [(pool[lab.index].tokens, u) for lab, (_, u) in
                                  zip(labs, sorted_spans, strict=True)])  # fmt: skip
    out = []
    for lab, (kept, uncertain), extra in zip(labs, sorted_spans, voted, strict=True):
        own = {(s.span.start, s.span.end): s.span.label for s in uncertain}
        stats.kept += len(kept)
        stats.uncertain += len(uncertain)
        stats.verified += len(extra)
        stats.retyped += sum(own[(s.start, s.end)] != s.label for s in extra)
        tags = pseudo_tags(lab, [s.span for s in kept] + extra, rule.threshold)
        if tags is None:
            continue
        stats.outside_words += tags.count(OUTSIDE)
        stats.ignored_words += tags.count(IGNORE_TAG)
        text = pool[lab.index]
        out.append(Sentence(text.tokens, tags, source=text.source))
    stats.sentences = len(out)
    return out, stats


def verify_task(config: CdlmConfig, domain: str, types: list[str]) -> Task:
    """The expert vote's task for ``verify="llm"``: the configured backend (``llama``, the
    embedded SmolLM2, when none is), its calls counted in a fresh usage log."""
    from cdlm.reasoning.stages import make_task

    backend = config.llm.backend if config.llm.backend != "none" else "llama"
    return make_task(llm_run_config(config, backend), domain, types, log=UsageLog())


# --- the student ---------------------------------------------------------------------------


class PseudoView:
    """A tagger as the training loop sees it on pseudo-labelled batches: words tagged
    :data:`IGNORE_TAG` carry no loss, and every loss term is multiplied by ``weight``."""

    def __init__(self, model: Tagger, weight: float) -> None:
        self.model = model
        self.weight = weight

    @property
    def device(self) -> Any:
        return self.model.device

    def train(self, mode: bool = True) -> PseudoView:
        self.model.train(mode)
        return self

    def builder(
        self, token_lists: Sequence[Sequence[str]], tag_lists: Sequence[Sequence[str]]
    ) -> Batch:
        """The tagger's batch with the no-loss words' tag ids set to the loss's ignore id."""
        from cdlm.model.tagger import IGNORE

        clean = [[OUTSIDE if t == IGNORE_TAG else t for t in tags] for tags in tag_lists]
        batch = self.model.builder([list(t) for t in token_lists], clean)
        assert batch.tags is not None
        for b, tags in enumerate(tag_lists):
            for w, tag in enumerate(tags):
                if tag == IGNORE_TAG:
                    batch.tags[b, w] = IGNORE
        return batch

    def __call__(self, batch: Batch) -> TaggerOutput:
        from cdlm.model.tagger import TaggerOutput

        out = self.model(batch)
        assert out.loss is not None
        losses = {name: value * self.weight for name, value in out.losses.items()}
        return TaggerOutput(out.logits, out.loss * self.weight, losses)


def mixed_plan(
    model: Tagger, gold: Sequence[Sentence], pseudo: Sequence[Sentence], weight: float,
    size: int, rng: random.Random,
) -> tuple[EpochPlan, int]:  # fmt: skip
    """Each epoch, a pass over the gold batches and one over the pseudo batches (through
    :class:`PseudoView`), interleaved in a seeded order; no pseudo step at weight 0."""
    view = PseudoView(model, weight)
    n_gold = n_batches(len(gold), size)
    n_pseudo = n_batches(len(pseudo), size) if weight > 0 else 0
    gold_batches, pseudo_batches = batch_stream(gold, size, rng), batch_stream(pseudo, size, rng)

    def plan(_epoch: int) -> list[tuple[Any, list[Sentence]]]:
        kinds = [False] * n_gold + [True] * n_pseudo
        rng.shuffle(kinds)
        return [(view, next(pseudo_batches)) if k else (model, next(gold_batches)) for k in kinds]

    return plan, n_gold + n_pseudo


def fit_student(
    model: Tagger, gold: Sequence[Sentence], pseudo: Sequence[Sentence],
    dev: Sequence[Sentence], config: CdlmConfig, progress: bool = True,
) -> tuple[int, SpanScores, list[EpochLog]]:  # fmt: skip
    """The target recipe's fine-tuning (:func:`cdlm.experiments.train.fit`) on gold + pseudo
    batches: early stopping on dev F1, the best epoch's weights left in ``model``."""
    t = config.train
    rng = random.Random(t.seed)
    plan, per_epoch = mixed_plan(model, gold, pseudo, config.selftrain.weight, t.batch_size, rng)
    return fit_plan(model, plan, per_epoch, dev, config, progress, "student epoch")


# --- rounds --------------------------------------------------------------------------------


@dataclass
class Context:
    """What every round of a self-training run shares."""

    config: CdlmConfig  # the run's config (selftrain.pool names the pool)
    out: Path
    data: TargetData
    pool: list[PoolText]
    teacher: Path
    pretrained: tuple[Tagger | None, Path | None]  # the source model and its folder
    data_dir: Path | str | None
    progress: bool
    task: Task | None  # the expert vote (verify="llm")


class RoundLog(BaseModel):
    """One round: the teacher's labelling pass, the selection, the student."""

    round: int
    threshold: float
    type_thresholds: dict[str, float]
    weight: float
    teacher: str
    labelled: int  # pool texts labelled (read back from the file included)
    resumed: int  # of those, read back
    label_seconds: float  # spent labelling in this call
    selection: SelectionStats
    student: str
    best_epoch: int
    dev: SpanScores
    train_seconds: float
    history: list[EpochLog]


def point_config(config: CdlmConfig, rule: Rule, weight: float, rounds: int) -> CdlmConfig:
    """``config`` with the selection values of one point (what its student is saved with)."""
    cfg = config.model_copy(deep=True)
    s = cfg.selftrain
    s.threshold, s.type_thresholds = rule.threshold, dict(rule.type_thresholds)
    s.weight, s.rounds = weight, rounds
    return cfg


def train_student(
    ctx: Context, cfg: CdlmConfig, pseudo: Sequence[Sentence]
) -> tuple[Tagger, int, SpanScores, list[EpochLog]]:
    """A student from the source model by the target recipe (the same model construction as
    :class:`cdlm.experiments.train.FineTuner`), fitted on gold + ``pseudo``."""
    model = fine_tuner(cfg, ctx.data, ctx.pretrained, ctx.data_dir, ctx.progress).new_model()
    fitted = fit_student(model, ctx.data.train, pseudo, ctx.data.dev, cfg, ctx.progress)
    return model, *fitted


def one_round(
    ctx: Context, r: int, teacher: Path, labels: Path, rule: Rule, weight: float, folder: Path
) -> RoundLog:
    """Label, select, train and save a student in ``folder``; a finished round of the same
    teacher, pool and values is read back instead."""
    cfg = point_config(ctx.config, rule, weight, r)
    key = {
        "teacher": file_digest(teacher / "model.safetensors"), "pool": pool_digest(ctx.pool),
        "config": training_view(cfg), "rule": [rule.threshold, dict(rule.type_thresholds),
        rule.low], "weight": weight, "llm": ctx.config.llm.model_dump(mode="json")
        if ctx.task is not None else None,
    }  # fmt: skip
    if (folder / ROUND_FILE).is_file():
        done = json.loads((folder / ROUND_FILE).read_text(encoding="utf-8"))
        if done.get("key") == key and (folder / "model.safetensors").is_file():
            return RoundLog.model_validate(done["log"])
    passed = label_pool(teacher, ctx.pool, labels, ctx.config, progress=ctx.progress)
    pseudo, stats = select_pseudo(passed.labelled, ctx.pool, rule, ctx.task)
    start = time.perf_counter()
    model, best, dev, history = train_student(ctx, cfg, pseudo)
    model.save(folder, extra={"best_epoch": best, "dev_f1": dev.f1})
    log = RoundLog(
        round=r, threshold=rule.threshold, type_thresholds=dict(rule.type_thresholds),
        weight=weight, teacher=str(teacher), labelled=len(passed.labelled),
        resumed=passed.resumed, label_seconds=passed.seconds, selection=stats,
        student=str(folder), best_epoch=best, dev=dev,
        train_seconds=time.perf_counter() - start, history=history,
    )  # fmt: skip
    write_json(folder / ROUND_FILE, {"key": key, "log": log.model_dump(mode="json")})
    return log


def run_rounds(
    ctx: Context, rule: Rule, weight: float, rounds: int, folder: Path
) -> list[RoundLog]:
    """``rounds`` rounds under one rule and weight, each student the next round's teacher; the
    first round's labels are shared by every point (same teacher)."""
    logs: list[RoundLog] = []
    teacher = ctx.teacher
    for r in range(1, rounds + 1):
        labels = (ctx.out if r == 1 else folder) / "pseudo" / f"round{r}.jsonl"
        logs.append(one_round(ctx, r, teacher, labels, rule, weight, folder / f"round{r}"))
        teacher = Path(logs[-1].student)
    return logs


# --- runs ----------------------------------------------------------------------------------


class GridPoint(BaseModel):
    """One setting tried on dev and its student's dev F1 (rounds 0: the teacher alone)."""

    threshold: float
    type_thresholds: dict[str, float] = {}
    weight: float
    rounds: int
    dev_f1: float
    checkpoint: str


class SelfTrainResult(BaseModel):
    """What a self-training run did: the kept checkpoint and every point and round on the way."""

    checkpoint: str
    target: str
    teacher: str
    teacher_dev_f1: float
    pool: str  # selftrain.pool: the file, "split" or the digest of an in-memory pool
    pool_texts: int
    pool_digest: str
    chosen: GridPoint  # the point whose model is the checkpoint
    grid: list[GridPoint]  # every point (the teacher's first)
    dev: SpanScores  # the checkpoint's dev scores
    rounds: list[RoundLog]  # every round trained, in order
    # verify="llm": usage per stage (requests, calls, tokens, seconds) from cdlm.llm.usage
    llm_usage: dict[str, dict[str, float | int]] | None = None
    seconds: float


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``train.threads`` for the call, restored after (as :func:`train` does)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ensure_teacher(
    config: CdlmConfig, folder: Path, data_dir: Path | str | None, runs: Path | str | None,
    progress: bool,
) -> Path:  # fmt: skip
    """The teacher: the single-target run of ``config`` without self-training, trained into
    ``folder`` (a finished one of the same config is reused). Its test split is not read."""
    cfg = config.model_copy(deep=True)
    cfg.selftrain = SelfTrainConfig()
    if (folder / "scores.json").is_file() and saved_config(folder) == training_view(cfg):
        return folder
    train(cfg, folder, data_dir, runs, progress, evaluate_test=False)
    return folder


def prepare(
    config: CdlmConfig, out: Path | str, target: str | None,
    pool: Sequence[PoolText] | Path | str | None, teacher: Path | str | None,
    data_dir: Path | str | None, runs: Path | str | None, progress: bool,
) -> Context:  # fmt: skip
    """Read everything a run needs before any training (a bad pool fails first), then the
    teacher (trained when not given), the source model and the vote's task."""
    from cdlm.data.registry import domain_name
    from cdlm.model.tagger import Tagger

    cfg = config.model_copy(deep=True)
    cfg.train.target = target or cfg.train.target
    if cfg.augment.in_use() or cfg.multisource.in_use():
        raise ConfigError("selftrain: not combined with FactMix or multi-source training yet")
    data = load_target(cfg, data_dir)
    texts, cfg.selftrain.pool = resolve_pool(pool, cfg, data, data_dir)
    types = label_types(data.labels)
    unknown = sorted(set(cfg.selftrain.type_thresholds) - set(types))
    if unknown:
        raise ConfigError(f"selftrain.type_thresholds: {', '.join(unknown)} not target types")
    out = Path(out)
    teacher_dir = Path(teacher) if teacher else ensure_teacher(
        cfg, out / "teacher", data_dir, runs, progress
    )  # fmt: skip
    foreign = set(label_types(Tagger.read_meta(teacher_dir)["labels"])) - set(types)
    if foreign:
        raise ConfigError(f"teacher {teacher_dir}: types {sorted(foreign)} are not the target's")
    source, source_dir, _, _ = pretrain_source(cfg, data_dir, runs, progress)
    task = None
    if cfg.selftrain.verify == "llm":
        task = verify_task(cfg, domain_name(target_of(cfg)), types)
    return Context(cfg, out, data, texts, teacher_dir, (source, source_dir), data_dir, progress,
                   task)  # fmt: skip


def dev_f1(ctx: Context, checkpoint: Path) -> float:
    """A checkpoint's dev F1, scored as the recipes score an epoch."""
    from cdlm.experiments.evaluate import score_model
    from cdlm.model.tagger import Tagger

    return score_model(Tagger.load(checkpoint), ctx.data.dev)[0].f1


def finish(
    ctx: Context, chosen: GridPoint, grid: list[GridPoint], logs: list[RoundLog], start: float
) -> SelfTrainResult:
    """Save the chosen model as the run's checkpoint (``out``) with the chosen values in its
    config, and ``scores.json`` last (its presence means the run finished)."""
    from cdlm.data.registry import domain_name
    from cdlm.experiments.evaluate import score_model
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp

    model = Tagger.load(chosen.checkpoint)
    rule = Rule(chosen.threshold, chosen.type_thresholds)
    cfg = point_config(ctx.config, rule, chosen.weight, chosen.rounds)
    model.config = model.config.model_copy(update={"selftrain": cfg.selftrain})
    dev = score_model(model, ctx.data.dev)[0]
    model.save(ctx.out, extra={"dev_f1": dev.f1, "selftrain_rounds": chosen.rounds})
    result = SelfTrainResult(
        checkpoint=str(ctx.out), target=domain_name(target_of(cfg)), teacher=str(ctx.teacher),
        teacher_dev_f1=grid[0].dev_f1, pool=cfg.selftrain.pool or "", pool_texts=len(ctx.pool),
        pool_digest=pool_digest(ctx.pool), chosen=chosen, grid=grid, dev=dev, rounds=logs,
        llm_usage=ctx.task.log.as_dict() if ctx.task is not None else None,
        seconds=time.perf_counter() - start,
    )  # fmt: skip
    provenance = stamp(seed=cfg.train.seed, config=cfg.model_dump(mode="json"))
    write_json(
        ctx.out / "scores.json", {**result.model_dump(mode="json"), "provenance": provenance}
    )
    return result


def teacher_point(ctx: Context) -> GridPoint:
    s = ctx.config.selftrain
    return GridPoint(threshold=s.threshold, weight=s.weight, rounds=0,
                     dev_f1=dev_f1(ctx, ctx.teacher), checkpoint=str(ctx.teacher))  # fmt: skip


def log_point(log: RoundLog) -> GridPoint:
    return GridPoint(
        threshold=log.threshold, type_thresholds=log.type_thresholds, weight=log.weight,
        rounds=log.round, dev_f1=log.dev.f1, checkpoint=log.student,
    )  # fmt: skip


def self_train(
    config: CdlmConfig, out: Path | str, *, target: str | None = None,
    pool: Sequence[PoolText] | Path | str | None = None, data_dir: Path | str | None = None,
    runs: Path | str | None = None, progress: bool = True, teacher: Path | str | None = None,
) -> SelfTrainResult:  # fmt: skip
    """Self-train with the values as set (``selftrain.threshold``, ``weight``, ``rounds``,
    ``type_thresholds``, ``verify``): the last round's student is saved to ``out``.

    ``pool``: :class:`PoolText` objects, a file, ``"split"``, or None for ``selftrain.pool``.
    ``teacher``: a one-domain checkpoint; None trains one (``out/teacher``). ``verify="llm"``
    asks the configured LLM (the embedded SmolLM2 by default, which only shows the cost and
    the plumbing: quality needs a real LLM); its usage is in the result."""
    start = time.perf_counter()
    with torch_threads(config.train.threads):
        ctx = prepare(config, out, target, pool, teacher, data_dir, runs, progress)
        s = ctx.config.selftrain
        rule = Rule(s.threshold, s.type_thresholds, s.low if s.verify == "llm" else None)
        logs = run_rounds(ctx, rule, s.weight, s.rounds, ctx.out / "rounds")
        grid = [teacher_point(ctx), *map(log_point, logs)]
        return finish(ctx, grid[-1], grid, logs, start)


def per_type_thresholds(ctx: Context, grid: Sequence[float], precision: float) -> dict[str, float]:
    """Each type's lowest grid threshold at which the teacher's kept dev spans of that type
    reach ``precision`` against the gold dev spans (else the highest grid threshold)."""
    from cdlm.model.tagger import Tagger

    dev = ctx.data.dev
    labs = label_texts(Tagger.load(ctx.teacher), [s.tokens for s in dev], range(len(dev)),
                       ctx.config)  # fmt: skip
    gold = [set(bio_spans(s.tags)) for s in dev]
    scored = [(k, s) for k, lab in enumerate(labs) for s in lab.scored()]
    out = {}
    for etype in label_types(ctx.data.labels):
        out[etype] = max(grid)
        for bar in sorted(grid):
            kept = [
                s.span in gold[k] for k, s in scored if s.span.label == etype and s.score >= bar
            ]
            if kept and sum(kept) / len(kept) >= precision:
                out[etype] = bar
                break
    return out


def choose_on_dev(
    config: CdlmConfig, out: Path | str, *, target: str | None = None,
    pool: Sequence[PoolText] | Path | str | None = None, data_dir: Path | str | None = None,
    runs: Path | str | None = None, progress: bool = True, teacher: Path | str | None = None,
) -> SelfTrainResult:  # fmt: skip
    """Try ``selftrain.grid_thresholds`` x ``grid_weights`` x ``grid_rounds`` (and per-type
    thresholds with ``selftrain.per_type``) and keep the best dev F1; the teacher alone is a
    point too (rounds 0). Ties go to fewer rounds, then the higher threshold. Every point's dev
    F1 is in ``result.grid``; the test split is never read. Arguments as :func:`self_train`."""
    start = time.perf_counter()
    with torch_threads(config.train.threads):
        ctx = prepare(config, out, target, pool, teacher, data_dir, runs, progress)
        s = ctx.config.selftrain
        low = s.low if s.verify == "llm" else None
        rules = {f"t{t:g}": Rule(t, {}, low) for t in sorted(set(s.grid_thresholds))}
        if s.per_type:
            types = per_type_thresholds(ctx, s.grid_thresholds, s.type_precision)
            rules["per-type"] = Rule(max(s.grid_thresholds), types, low)
        grid, logs = [teacher_point(ctx)], []
        for weight in sorted(set(s.grid_weights)):
            for name, rule in rules.items():
                folder = ctx.out / "grid" / f"{name}_w{weight:g}"
                point_logs = run_rounds(ctx, rule, weight, max(s.grid_rounds), folder)
                logs += point_logs
                grid += [log_point(g) for g in point_logs if g.round in s.grid_rounds]
        chosen = max(grid, key=lambda p: (p.dev_f1, -p.rounds, p.threshold))
        return finish(ctx, chosen, grid, logs, start)


def run_selftrain(
    config: CdlmConfig, out: Path | str, *, data_dir: Path | str | None = None,
    runs: Path | str | None = None, progress: bool = True, teacher: Path | str | None = None,
) -> SelfTrainResult:  # fmt: skip
    """What ``cdlm train --unlabeled FILE`` runs (``selftrain.pool = FILE``): the choice on dev
    when ``selftrain.choose``, else the values as set."""
    run = choose_on_dev if config.selftrain.choose else self_train
    return run(config, out, data_dir=data_dir, runs=runs, progress=progress, teacher=teacher)
