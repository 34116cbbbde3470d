"""Training: source pre-training (cached), then target fine-tuning with early stopping.

The CrossNER "pre-train then fine-tune" protocol:

1. **Source** (``pretrain_source``): a plain tagger (no fusion, no causal module) trained on the
   source train split (CoNLL-2003) for ``train.source_epochs``. It is saved under
   ``<runs>/source/<source>__<encoder>__seed<S>__<hash>/`` and reused by every target that asks
   for the same source, encoder, source seed and training settings. Its seed is
   ``train.source_seed``, separate from ``train.seed``, so trying several target seeds does not
   repeat the source pre-training.
2. **Target** (:class:`FineTuner`: ``Tagger.from_source`` + ``fit``): a new head over the target
   BIO tags on top of a copy of the source encoder and casing features (the tagger builds its
   fusion from :func:`target_graphs`), trained on the target train split; dev F1 after every
   epoch, stop after ``train.patience`` epochs without gain, keep the best epoch.
3. The best model is saved (safetensors + ``config.json``) with ``scores.json``: dev and test
   scores at the best epoch, the per-epoch history and wall times.

The runs folder is ``--runs-dir``, else ``$CDLM_RUNS_DIR``, else ``./runs``. The loop itself
(batches, optimizer, schedule, early stopping) is :mod:`cdlm.experiments.loop`; this module is the
recipe on top of it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence
from cdlm.errors import ConfigError
from cdlm.experiments.loop import (
    EpochPlan,
    EpochRun,
    Stopping,
    fit_epochs,
    n_batches,
    set_seed,
    stream_plan,
)
from cdlm.metrics import SpanScores
from cdlm.results import write_json
from cdlm.runs import claim, default_out_dir, runs_dir, target_of

if TYPE_CHECKING:
    from cdlm.graphs import LabelGraphs
    from cdlm.model.tagger import Tagger


class EpochLog(BaseModel):
    epoch: int
    train_loss: float
    dev_f1: float
    seconds: float
    steps: int = 0  # update steps in this epoch
    # Mean of each weighted loss term over the epoch ("ner", "gm", "aux", "ctx", "cons", ...).
    losses: dict[str, float] = {}


class TrainResult(BaseModel):
    """What ``train`` did: where the best checkpoint is, its scores and how long it took."""

    checkpoint: str
    target: str
    variant: str
    seed: int
    source_checkpoint: str | None
    source_cached: bool
    source_seconds: float  # time of the source pre-training (0 when cached or skipped)
    target_seconds: float  # time of target fine-tuning (all epochs, dev evaluation included)
    best_epoch: int
    dev: SpanScores
    test: SpanScores | None  # None: not asked for, or the dataset has no test split
    test_sentences_per_s: float | None
    history: list[EpochLog]
    # `--augment factmix`: grid points with dev F1, the chosen ratios, generated/kept counts.
    augment: dict[str, Any] | None = None
    # Causal variants: the debiasing strength chosen on dev and the dev F1 of every grid point.
    alpha_sweep: list[dict[str, float]] | None = None
    # (correct, predicted, gold) strict spans per test sentence, in file order.
    test_counts: list[tuple[int, int, int]] | None = None


def _limit(sentences: list[Sentence], config: CdlmConfig) -> list[Sentence]:
    n = config.train.max_train_sentences
    return sentences[:n] if n else sentences


# Bumped whenever the source training code changes what a recipe produces (the schedule's
# shape, the batching): cached source models of an older recipe are then never reused.
# 2: own source rates and linear warm-up/decay schedule (issue 14).
SOURCE_RECIPE_VERSION = 2


def _key(config: CdlmConfig, source: str, data_dir: Path | str | None) -> str:
    """Cache folder name of a source model: readable prefix + hash of everything that shapes it
    (the recipe version, the data, the encoder and every source training setting)."""
    from cdlm.data.registry import DOMAINS, domain_dir, domain_name
    from cdlm.model.encoder import encoder_label

    t = config.train
    where = source if source in DOMAINS else str(domain_dir(source, data_dir).resolve())
    fields = {
        "recipe": SOURCE_RECIPE_VERSION,
        "source": where,
        "encoder": encoder_label(config.encoder.name),
        "encoder_cfg": config.encoder.model_dump(mode="json"),
        "dropout": config.tagger.dropout,
        "seed": t.source_seed,
        "epochs": t.source_epochs,
        "optim": [
            t.source_lr,
            t.source_head_lr,
            t.weight_decay,
            t.source_warmup_ratio,
            t.source_batch_size,
            t.grad_clip,
        ],
        "max_train_sentences": t.max_train_sentences,
    }
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    slug = "".join(
        c if c.isalnum() or c in "-." else "-" for c in encoder_label(config.encoder.name)
    )
    return f"{domain_name(source)}__{slug}__seed{t.source_seed}__{digest}"


def source_config(config: CdlmConfig) -> CdlmConfig:
    """The config of the source model: plain tagger, seeded by ``train.source_seed``."""
    cfg = config.model_copy(deep=True)
    cfg.fusion.enabled = False
    cfg.causal.explicit = False
    cfg.causal.implicit = False
    cfg.train.target = config.train.source
    cfg.train.seed = config.train.source_seed
    cfg.train.variant = "source"
    cfg.train.target_epochs = max(config.train.source_epochs, 1)
    cfg.train.lr, cfg.train.head_lr = config.train.source_lr, config.train.source_head_lr
    cfg.train.warmup_ratio = config.train.source_warmup_ratio
    cfg.train.batch_size = config.train.source_batch_size
    cfg.train.lr_decay, cfg.train.decay_epochs, cfg.train.min_lr_ratio = "linear", None, 0.0
    return cfg


def pretrain_source(
    config: CdlmConfig,
    data_dir: Path | str | None = None,
    runs: Path | str | None = None,
    progress: bool = True,
) -> tuple[Tagger | None, Path | None, float, bool]:
    """The source tagger: (model, folder, seconds spent training, came from cache).

    ``train.source_epochs = 0`` skips it: the target model starts from the plain encoder.
    """
    from cdlm.model.tagger import Tagger

    if config.train.source_epochs == 0:
        return None, None, 0.0, False
    source = config.train.source
    folder = runs_dir(runs) / "source" / _key(config, source, data_dir)
    model_file = folder / "model.safetensors"
    lock = None
    while not model_file.is_file() and (lock := claim(folder)) is None:
        time.sleep(config.train.lock_poll_seconds)  # another process is pre-training it
    try:
        if model_file.is_file():  # cached, or finished just before we claimed it
            return Tagger.load(folder), folder, 0.0, True
        return _pretrain(config, folder, data_dir, progress)
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)


def _pretrain(
    config: CdlmConfig, folder: Path, data_dir: Path | str | None, progress: bool
) -> tuple[Tagger, Path, float, bool]:
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.model.tagger import Tagger

    source = config.train.source
    cfg = source_config(config)
    start = time.perf_counter()
    set_seed(cfg.train.seed)
    sentences = _limit(load_split(source, "train", data_dir), cfg)
    model = Tagger.create(cfg, domain_labels(source, data_dir))
    size, per_epoch = cfg.train.batch_size, n_batches(len(sentences), cfg.train.batch_size)
    plan = stream_plan(model, sentences, size, random.Random(cfg.train.seed), per_epoch)
    stopping = Stopping(cfg.train.source_epochs)  # no dev score: every epoch, the last kept
    _, epochs = fit_epochs(
        model, plan, per_epoch, cfg, stopping, progress=progress, label=f"source {source} epoch"
    )
    history = [{"epoch": e.epoch, "train_loss": e.loss} for e in epochs]
    seconds = time.perf_counter() - start
    # Write to a temporary folder first so an interrupted run never leaves a half cache entry.
    tmp = folder.with_name(folder.name + ".tmp")
    model.save(
        tmp, extra={"history": history, "train_seconds": seconds, "train_sentences": len(sentences)}
    )
    tmp.replace(folder)
    return model, folder, seconds, False


def target_graphs(
    config: CdlmConfig,
    source: Tagger | None,
    source_dir: Path | None,
    train_sents: Sequence[Sentence],
    data_dir: Path | str | None,
) -> LabelGraphs | None:
    """The label graphs the tagger builds its fusion from (docs/DESIGN.md, "Label-structure
    fusion"), None when ``fusion.enabled`` is off: the committed
    ``graphs/<source>__<target>.json`` when it was built from this very source checkpoint, else
    built now from the source tagger and cached beside its checkpoint (full train split only)."""
    from cdlm.data.registry import load_split
    from cdlm.graphs import load_or_build

    if not config.fusion.enabled:
        return None
    if source is None or source_dir is None:
        raise ConfigError(
            "fusion.enabled: label graphs need a source model (train.source_epochs > 0)"
        )
    full = len(train_sents) == len(load_split(target_of(config), "train", data_dir))
    return load_or_build(
        source,
        config,
        source_dir,
        source=config.train.source,
        target=target_of(config),
        cache_dir=source_dir / "graphs" if full else None,
        target_sentences=train_sents,
        data_dir=data_dir,
    )


def _needs_swap_names(config: CdlmConfig) -> bool:
    return config.causal.explicit and config.causal.swap_view


def swap_names(
    config: CdlmConfig, train_sents: Sequence[Sentence], data_dir: Path | str | None
) -> dict[str, tuple[tuple[str, ...], ...]]:
    """The causal swap view's names per target type: the gold names of the other CrossNER
    domains' train sets (not the target's, not the source's: the tagger was pre-trained on
    those names); a type no other domain has falls back to the target train names (the view
    then swaps a name for another of the same training set)."""
    from cdlm.augment.entity import build_entity_base
    from cdlm.data.registry import DOMAINS, domain_name, find_data_dir, load_split

    skip = {domain_name(target_of(config)), domain_name(config.train.source)}
    folder = find_data_dir(data_dir)
    others = [
        s
        for d in DOMAINS
        if d not in skip and (folder / d / "train.txt").is_file()
        for s in load_split(d, "train", folder)
    ]
    own = build_entity_base(train_sents).mentions
    other = build_entity_base(others).mentions if others else {}
    return {etype: other.get(etype) or mentions for etype, mentions in own.items()}


def label_descriptions(config: CdlmConfig) -> dict[str, str] | None:
    """The texts the target head rows start from, by ``tagger.label_init``: ``{type:
    description}`` (``prompts/labels/<domain>.toml``), ``{}`` for the type names alone ("auto"
    without a label file, said in one line on stderr), or None for random rows."""
    from cdlm.data.labels import label_file, load_label_descriptions
    from cdlm.data.registry import domain_name

    mode = config.tagger.label_init
    if mode == "random":
        return None
    if mode == "names":
        return {}
    path = label_file(domain_name(target_of(config)))
    descriptions = load_label_descriptions(path)
    if descriptions:
        return descriptions
    if mode == "descriptions":
        raise ConfigError(
            f"tagger.label_init: {path} has no [types] descriptions for the target domain"
        )
    print(
        f"note: no label descriptions at {path}: the head rows start from the type names "
        '(write one, [types] TYPE = "description", to start them from the descriptions)',
        file=sys.stderr,
    )
    return {}


def fit(
    model: Tagger,
    train_sentences: Sequence[Sentence],
    dev_sentences: Sequence[Sentence],
    config: CdlmConfig,
    progress: bool = True,
    steps_per_epoch: int | None = None,
) -> tuple[int, SpanScores, list[EpochLog]]:
    """Target fine-tuning with early stopping on dev F1; leaves the best epoch's weights in
    ``model``. Returns (best epoch, its dev scores, history). An epoch is one pass over
    ``train_sentences``, or ``steps_per_epoch`` update steps (drawn pass after pass) when
    given: FactMix's steps-matched mode."""
    t = config.train
    per_epoch = steps_per_epoch or n_batches(len(train_sentences), t.batch_size)
    plan = stream_plan(model, train_sentences, t.batch_size, random.Random(t.seed), per_epoch)
    return fit_plan(model, plan, per_epoch, dev_sentences, config, progress, "target epoch")


def fit_plan(
    model: Tagger,
    plan: EpochPlan,
    per_epoch: int,
    dev_sentences: Sequence[Sentence],
    config: CdlmConfig,
    progress: bool,
    label: str,
) -> tuple[int, SpanScores, list[EpochLog]]:
    """Fine-tune ``model`` on ``plan`` (``per_epoch`` steps an epoch) with early stopping on
    dev F1; the best epoch's weights stay in ``model``. (best epoch, its dev scores, history)."""
    from cdlm.experiments.evaluate import score_model

    t = config.train
    history: list[EpochLog] = []
    dev_scores: list[SpanScores] = []
    evaluate = epoch_scorer(
        lambda: score_model(model, dev_sentences)[0], history, dev_scores, "dev"
    )
    stopping = Stopping(t.target_epochs, t.patience, t.min_delta)
    best_epoch, _ = fit_epochs(
        model, plan, per_epoch, config, stopping, evaluate, progress=progress, label=label
    )
    return best_epoch, dev_scores[best_epoch - 1], history


def train(
    config: CdlmConfig,
    out_dir: Path | str | None = None,
    data_dir: Path | str | None = None,
    runs: Path | str | None = None,
    progress: bool = True,
    evaluate_test: bool = True,
) -> TrainResult:
    """Source pre-training (cached) + target fine-tuning; saves the best model to ``out_dir``.

    ``train.threads`` sets torch's CPU threads for the call. On a machine shared with other
    busy processes, 1 thread can be several times faster than 2: OpenMP threads wait for each
    other at every operation, and each wait costs a scheduler time slice when cores are taken.
    """
    import torch

    threads = torch.get_num_threads()
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    try:
        return _train(config, out_dir, data_dir, runs, progress, evaluate_test)
    finally:
        torch.set_num_threads(threads)  # a library call leaves the process as it found it


@dataclass
class TargetData:
    """What a target fine-tuning reads, read before any training (a bad file fails before
    minutes of source pre-training), the label file included (read once, so "auto" notes a
    missing one once)."""

    labels: list[str]
    train: list[Sentence]
    dev: list[Sentence]
    descriptions: dict[str, str] | None  # label_descriptions(): the head rows' start


def load_target(config: CdlmConfig, data_dir: Path | str | None) -> TargetData:
    """The target's labels, train split (K-shot sample, first N) and dev split."""
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.data.sampling import k_shot

    target, t = target_of(config), config.train
    labels = domain_labels(target, data_dir)
    train_sents = load_split(target, "train", data_dir)
    if t.k_shot:
        train_sents = k_shot(train_sents, t.k_shot, t.seed)
    train_sents = _limit(train_sents, config)
    dev_sents = load_split(target, "dev", data_dir)
    return TargetData(labels, train_sents, dev_sents, label_descriptions(config))


@dataclass
class FineTuner:
    """One target fine-tuning from the source model, on the sentences it is given: FactMix
    calls it once per training set, each from the same seed and source model."""

    config: CdlmConfig
    data: TargetData
    source: Tagger | None
    source_dir: Path | None
    data_dir: Path | str | None
    progress: bool
    swap_names: dict[str, tuple[tuple[str, ...], ...]] | None = None
    steps: int | None = None  # update steps per epoch (None: a pass over the sentences)

    def __call__(
        self, sentences: Sequence[Sentence]
    ) -> tuple[Tagger, int, SpanScores, list[EpochLog]]:
        model = self.new_model()
        return model, *fit(model, sentences, self.data.dev, self.config, self.progress, self.steps)

    def new_model(self, config: CdlmConfig | None = None) -> Tagger:
        """A fresh target tagger from the source model, seeded: the label graphs (always from
        the original train set), then the label-semantics head rows."""
        from cdlm.model.tagger import Tagger

        config = config or self.config
        set_seed(config.train.seed)
        graphs = target_graphs(config, self.source, self.source_dir, self.data.train, self.data_dir)
        model = Tagger.from_source(
            config, self.data.labels, self.source, graphs=graphs, swap_names=self.swap_names
        )
        if self.data.descriptions is not None:
            model.init_label_rows(self.data.descriptions, config.tagger.label_init_scale)
        return model


def fine_tuner(
    config: CdlmConfig,
    data: TargetData,
    pretrained: tuple[Tagger | None, Path | None],
    data_dir: Path | str | None,
    progress: bool,
) -> FineTuner:
    """The fine-tuning of this config: the swap view's names when it has one, and FactMix's
    steps-matched epochs (the update steps of a pass over the original sentences)."""
    t = config.train
    names = swap_names(config, data.train, data_dir) if _needs_swap_names(config) else None
    steps = n_batches(len(data.train), t.batch_size) if config.augment.steps_matched else None
    return FineTuner(config, data, *pretrained, data_dir, progress, names, steps)


def _fine_tune(
    tuner: FineTuner, data_dir: Path | str | None, runs: Path | str | None
) -> tuple[tuple[Tagger, int, SpanScores, list[EpochLog]], dict[str, Any] | None]:
    """The fine-tuned model (best epoch, dev scores, history) and FactMix's record, if any."""
    if tuner.config.augment.method == "factmix":  # FactMix semi-facts (experiments/factmix.py)
        from cdlm.experiments.factmix import factmix_fine_tune

        return factmix_fine_tune(tuner.data.train, tuner.config, tuner, data_dir, runs)
    return tuner(tuner.data.train), None


def _sweep_alpha(
    model: Tagger, dev: list[Sentence], config: CdlmConfig, dev_scores: SpanScores
) -> tuple[list[dict[str, float]] | None, SpanScores]:
    """Causal debiasing strength chosen on dev (when there is a grid): the sweep, and the dev
    scores at the chosen strength, which the model keeps."""
    if not (config.causal.explicit and config.causal.alpha_grid):
        return None, dev_scores
    from cdlm.experiments.debias import sweep_alpha

    _, points, scores = sweep_alpha(model, dev, config.causal.alpha_grid)
    return [p.model_dump() for p in points], scores


def epoch_scorer(
    score: Callable[[], SpanScores],
    history: list[EpochLog],
    dev_scores: list[SpanScores],
    what: str,
) -> Callable[[EpochRun], tuple[float, str]]:
    """The loop's evaluation hook: ``score()`` after each epoch, logged into ``history`` and
    ``dev_scores``; early stopping reads its F1."""

    def evaluate(epoch: EpochRun) -> tuple[float, str]:
        scores = score()
        dev_scores.append(scores)
        history.append(
            EpochLog(
                epoch=epoch.epoch,
                train_loss=epoch.loss,
                dev_f1=scores.f1,
                seconds=epoch.seconds,
                steps=epoch.steps,
                losses=epoch.terms,
            )
        )
        return scores.f1, f"loss {epoch.loss:.4f} {what} F1 {100 * scores.f1:.2f}"

    return evaluate


def score_test_split(
    model: Tagger, config: CdlmConfig, data_dir: Path | str | None
) -> tuple[SpanScores | None, float | None, list[tuple[int, int, int]] | None]:
    """Test scores, sentences per second and per-sentence span counts (the suite's paired
    bootstrap intervals need them); Nones when the dataset has no test split."""
    from cdlm.data.registry import load_split, split_path
    from cdlm.experiments.evaluate import score_model
    from cdlm.metrics import sentence_counts

    target = target_of(config)
    if not split_path(target, "test", data_dir).is_file():
        return None, None, None
    test_sents = load_split(target, "test", data_dir)
    scores, seconds, pred = score_model(model, test_sents)
    speed = len(test_sents) / seconds if seconds > 0 else 0.0
    return scores, speed, sentence_counts([s.tags for s in test_sents], pred)


def _train(
    config: CdlmConfig,
    out_dir: Path | str | None,
    data_dir: Path | str | None,
    runs: Path | str | None,
    progress: bool,
    evaluate_test: bool,
) -> TrainResult:
    from cdlm.data.registry import domain_name
    from cdlm.provenance import stamp

    t = config.train
    out = Path(out_dir) if out_dir is not None else default_out_dir(config, runs)
    data = load_target(config, data_dir)  # first: a bad file fails before source training
    source, source_dir, source_seconds, cached = pretrain_source(config, data_dir, runs, progress)
    start = time.perf_counter()
    tuner = fine_tuner(config, data, (source, source_dir), data_dir, progress)
    del source
    (model, best_epoch, dev_scores, history), augment_record = _fine_tune(tuner, data_dir, runs)
    tuner.source = None  # free the source model
    alpha_sweep, dev_scores = _sweep_alpha(model, data.dev, config, dev_scores)
    target_seconds = time.perf_counter() - start

    # Saved before any test scoring: a dataset without a test split still gets its model.
    model.save(out, extra={"best_epoch": best_epoch, "dev_f1": dev_scores.f1})
    no_test = (None, None, None)
    test_scores, test_speed, test_counts = (
        score_test_split(model, config, data_dir) if evaluate_test else no_test
    )
    result = TrainResult(
        checkpoint=str(out),
        target=domain_name(target_of(config)),
        variant=t.variant,
        seed=t.seed,
        source_checkpoint=str(source_dir) if source_dir else None,
        source_cached=cached,
        source_seconds=source_seconds,
        target_seconds=target_seconds,
        best_epoch=best_epoch,
        dev=dev_scores,
        test=test_scores,
        test_sentences_per_s=test_speed,
        history=history,
        augment=augment_record,
        alpha_sweep=alpha_sweep,
        test_counts=test_counts,
    )
    record = {
        **result.model_dump(mode="json"),
        "provenance": stamp(seed=t.seed, config=config.model_dump(mode="json")),
    }
    write_json(out / "scores.json", record)  # last: its presence means the run finished
    return result
