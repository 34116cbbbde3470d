"""Training: source pre-training (cached), then target fine-tuning with early stopping.

The CrossNER "pre-train then fine-tune" protocol:

1. **Source** (``pretrain_source``): a plain tagger (no fusion, no causal module) trained on the
   source train split (CoNLL-2003) for ``train.source_epochs``. It is saved under
   ``<runs>/source/<source>__<encoder>__seed<S>__<hash>/`` and reused by every target that asks
   for the same source, encoder, source seed and training settings. Its seed is
   ``train.source_seed``, separate from ``train.seed``, so trying several target seeds does not
   repeat the source pre-training.
2. **Target** (``build_target_model`` + ``fit``): a new head over the target BIO tags on top of a
   copy of the source encoder and casing features, trained on the target train split; dev F1
   after every epoch, stop after ``train.patience`` epochs without gain, keep the best epoch.
3. The best model is saved (safetensors + ``config.json``) with ``scores.json``: dev and test
   scores at the best epoch, the per-epoch history and wall times.

The runs folder is ``--runs-dir``, else ``$CDLM_RUNS_DIR``, else ``./runs``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence
from cdlm.errors import ConfigError
from cdlm.metrics import SpanScores
from cdlm.results import write_json
from cdlm.runs import claim, default_out_dir, runs_dir, target_of

if TYPE_CHECKING:
    import torch

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


def set_seed(seed: int) -> None:
    """Seed every generator training touches; CPU kernels used here are deterministic."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _limit(sentences: list[Sentence], config: CdlmConfig) -> list[Sentence]:
    n = config.train.max_train_sentences
    return sentences[:n] if n else sentences


def batches(
    sentences: Sequence[Sentence], size: int, rng: random.Random
) -> Iterator[list[Sentence]]:
    """Shuffled batches of similar length: shuffle, sort within pools of 50 batches, then shuffle
    the batch order (less padding, hence faster on a CPU, and still random)."""
    order = list(range(len(sentences)))
    rng.shuffle(order)
    pool = size * 50
    chunks: list[list[int]] = []
    for k in range(0, len(order), pool):
        part = sorted(order[k : k + pool], key=lambda i: len(sentences[i].tokens))
        chunks.extend(part[j : j + size] for j in range(0, len(part), size))
    rng.shuffle(chunks)
    for chunk in chunks:
        yield [sentences[i] for i in chunk]


def lr_factor(step: int, warmup: int, horizon: int, decay: str, floor: float) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up over ``warmup`` steps, then
    ``decay`` ("linear", "cosine" or "none") from 1 down to ``floor`` at ``horizon``, then flat."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if decay == "none" or horizon <= warmup:
        return 1.0 if decay == "none" else floor
    progress = min((step - warmup) / (horizon - warmup), 1.0)
    shape = 1.0 - progress if decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return floor + (1.0 - floor) * shape


def batch_stream(
    sentences: Sequence[Sentence], size: int, rng: random.Random
) -> Iterator[list[Sentence]]:
    """:func:`batches` pass after pass, without end: an epoch takes the next N of them (one
    pass when N is the pass length, the same batches in the same order as a fresh pass)."""
    while True:
        yield from batches(sentences, size, rng)


def make_optimizer(model: Tagger, config: CdlmConfig, steps_per_epoch: int):
    """AdamW with the encoder at ``train.lr`` and new layers at ``train.head_lr``; no weight
    decay on biases and LayerNorm; the schedule of :func:`lr_factor` with the decay horizon
    ``train.decay_epochs`` (None = ``train.target_epochs``)."""
    import torch

    t = config.train
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_encoder = name.startswith("encoder.")
        no_decay = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        groups.setdefault((is_encoder, no_decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": t.lr if is_encoder else t.head_lr,
            "weight_decay": 0.0 if no_decay else t.weight_decay,
        }
        for (is_encoder, no_decay), params in sorted(groups.items())
    ]
    # The fused kernel is one pass over each tensor instead of ~10 small ops: several times
    # faster on a busy CPU, same update.
    optimizer = torch.optim.AdamW(param_groups, fused=True)
    horizon = max((t.decay_epochs or t.target_epochs) * steps_per_epoch, 1)
    warmup = int(t.warmup_ratio * horizon)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, horizon, t.lr_decay, t.min_lr_ratio)
    )
    return optimizer, scheduler


def progress_bars(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )


def plain_progress(progress) -> bool:
    """Progress is on but the output is a log file, where a live bar shows nothing."""
    return not progress.disable and not progress.console.is_terminal


def train_epoch(
    model: Tagger,
    chunks: Iterator[list[Sentence]],
    n_batches: int,
    config: CdlmConfig,
    optimizer,
    scheduler,
    progress,
    description: str,
    terms: dict[str, float] | None = None,
) -> float:
    """``n_batches`` update steps on the next batches of ``chunks`` (an epoch; FactMix's
    steps-matched mode draws more than one pass); returns the mean training loss and adds the
    mean of each loss term to ``terms`` when given."""
    steps = [(model, next(chunks)) for _ in range(n_batches)]
    return train_steps(steps, model, config, optimizer, scheduler, progress, description, terms)


def train_steps(
    steps: Sequence[tuple[Tagger, list[Sentence]]],
    params: torch.nn.Module,
    config: CdlmConfig,
    optimizer,
    scheduler,
    progress,
    description: str,
    terms: dict[str, float] | None = None,
) -> float:
    """One optimiser step per ``(tagger, batch)`` (several taggers may share weights, as the
    heads of a multi-domain model do; ``params`` holds them all, for gradient clipping);
    returns the mean training loss and adds the mean of each loss term to ``terms``."""
    import torch

    task = progress.add_task(description, total=len(steps), status="")
    total, done = 0.0, 0
    sums: dict[str, float] = {}
    for model, chunk in steps:
        model.train()
        batch = model.builder([s.tokens for s in chunk], [s.tags for s in chunk])
        out = model(batch.to(model.device))
        assert out.loss is not None
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        total += out.loss.item()
        for name, value in out.losses.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        done += 1
        progress.update(task, advance=1, status=f"loss {total / done:.4f}")
        if plain_progress(progress) and done % max(len(steps) // 10, 1) == 0:
            # Logs and CI have no live bar: a line every 10% instead.
            progress.console.print(f"{description}: {done}/{len(steps)} loss {total / done:.4f}")
    progress.remove_task(task)
    if terms is not None:
        terms.update({name: value / max(done, 1) for name, value in sums.items()})
    return total / max(done, 1)


def n_batches(n_sentences: int, size: int) -> int:
    return (n_sentences + size - 1) // size


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
    per_epoch = n_batches(len(sentences), cfg.train.batch_size)
    optimizer, scheduler = make_optimizer(model, cfg, per_epoch)
    chunks = batch_stream(sentences, cfg.train.batch_size, random.Random(cfg.train.seed))
    history = []
    with progress_bars(progress) as bar:
        for epoch in range(1, cfg.train.source_epochs + 1):
            loss = train_epoch(
                model,
                chunks,
                per_epoch,
                cfg,
                optimizer,
                scheduler,
                bar,
                f"source {source} epoch {epoch}/{cfg.train.source_epochs}",
            )
            history.append({"epoch": epoch, "train_loss": loss})
    seconds = time.perf_counter() - start
    # Write to a temporary folder first so an interrupted run never leaves a half cache entry.
    tmp = folder.with_name(folder.name + ".tmp")
    model.save(
        tmp, extra={"history": history, "train_seconds": seconds, "train_sentences": len(sentences)}
    )
    tmp.replace(folder)
    return model, folder, seconds, False


def build_target_model(config: CdlmConfig, labels: list[str], source: Tagger | None) -> Tagger:
    """A tagger for the target labels: a copy of the source encoder and casing features (or the
    pre-trained encoder when there is no source model) and a fresh head."""
    from cdlm.model.tagger import Tagger

    if source is None:
        return Tagger.create(config, labels)
    model = Tagger(
        config, labels, copy.deepcopy(source.encoder), source.tokenizer, source.encoder_name
    )
    if source.casing is not None and model.casing is not None:
        model.casing.load_state_dict(source.casing.state_dict())
    return model


def _fusion_module(
    config: CdlmConfig,
    model: Tagger,
    source: Tagger | None,
    source_dir: Path | None,
    train_sents: list[Sentence],
    data_dir: Path | str | None,
) -> torch.nn.Module | None:
    """The label-graph fusion (DESIGN.md section 2) from the source tagger's label graphs:
    the committed ``graphs/<source>__<target>.json`` when it was built from this very source
    checkpoint, else built now and cached beside the source checkpoint (full train split only)."""
    from cdlm.data.registry import load_split
    from cdlm.graphs import load_or_build
    from cdlm.model.fusion import build_fusion

    if source is None or source_dir is None:
        raise ConfigError(
            "fusion.enabled: label graphs need a source model (train.source_epochs > 0)"
        )
    full = len(train_sents) == len(load_split(target_of(config), "train", data_dir))
    graphs = load_or_build(
        source,
        config,
        source_dir,
        source=config.train.source,
        target=target_of(config),
        cache_dir=source_dir / "graphs" if full else None,
        target_sentences=train_sents,
        data_dir=data_dir,
    )
    return build_fusion(config, graphs, source.head.weight, model.labels)


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
    from cdlm.data.registry import domain_name
    from cdlm.reasoning.templates import default_prompts_dir, load_label_file

    mode = config.tagger.label_init
    if mode == "random":
        return None
    if mode == "names":
        return {}
    path = default_prompts_dir() / "labels" / f"{domain_name(target_of(config))}.toml"
    descriptions = load_label_file(path)
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


def state_copy(model: torch.nn.Module) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def keep_best(
    model: torch.nn.Module,
    epochs: int,
    patience: int,
    run_epoch: Callable[[int, Any], tuple[float, str]],
    progress: bool = True,
    label: str = "epoch",
    min_delta: float = 0.0,
) -> int:
    """Early stopping: ``run_epoch(epoch, bar)`` trains one epoch and returns (dev score, status
    line); stop after ``patience`` epochs without a gain above ``min_delta`` (a score creeping
    up by less does not reset the count, but the best epoch is still kept); leave the best
    epoch's weights in ``model``. Returns the best epoch."""
    best_epoch, best, best_state = 0, float("-inf"), None
    last_gain_epoch, last_gain = 0, float("-inf")
    with progress_bars(progress) as bar:
        overall = bar.add_task(f"{label}s", total=epochs, status="")
        for epoch in range(1, epochs + 1):
            score, status = run_epoch(epoch, bar)
            if best_state is None or score > best:
                best_epoch, best, best_state = epoch, score, state_copy(model)
            if score > last_gain + min_delta:  # a real gain restarts the patience
                last_gain_epoch, last_gain = epoch, score
            status = f"{status} (best {100 * best:.2f} @ {best_epoch})"
            bar.update(overall, advance=1, status=status)
            if plain_progress(bar):
                bar.console.print(f"{label} {epoch}: {status}")
            if epoch - last_gain_epoch >= patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    return best_epoch


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
    from cdlm.experiments.evaluate import score_model

    t = config.train
    per_epoch = steps_per_epoch or n_batches(len(train_sentences), t.batch_size)
    optimizer, scheduler = make_optimizer(model, config, per_epoch)
    chunks = batch_stream(train_sentences, t.batch_size, random.Random(t.seed))
    history: list[EpochLog] = []
    dev_scores: list[SpanScores] = []

    def run_epoch(epoch: int, bar: Any) -> tuple[float, str]:
        start = time.perf_counter()
        terms: dict[str, float] = {}
        description = f"target epoch {epoch}/{t.target_epochs}"
        loss = train_epoch(
            model, chunks, per_epoch, config, optimizer, scheduler, bar, description, terms
        )
        scores, _, _ = score_model(model, dev_sentences)
        dev_scores.append(scores)
        history.append(
            EpochLog(
                epoch=epoch,
                train_loss=loss,
                dev_f1=scores.f1,
                seconds=time.perf_counter() - start,
                steps=per_epoch,
                losses=terms,
            )
        )
        return scores.f1, f"loss {loss:.4f} dev F1 {100 * scores.f1:.2f}"

    best_epoch = keep_best(
        model, t.target_epochs, t.patience, run_epoch, progress, "target epoch", t.min_delta
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


def _train(
    config: CdlmConfig,
    out_dir: Path | str | None,
    data_dir: Path | str | None,
    runs: Path | str | None,
    progress: bool,
    evaluate_test: bool,
) -> TrainResult:
    from cdlm.data.registry import domain_labels, domain_name, load_split, split_path
    from cdlm.data.sampling import k_shot
    from cdlm.experiments.evaluate import score_model
    from cdlm.provenance import stamp

    target = target_of(config)
    t = config.train
    out = Path(out_dir) if out_dir is not None else default_out_dir(config, runs)
    # Load the data first: a bad file should fail before minutes of source training.
    labels = domain_labels(target, data_dir)
    train_sents = load_split(target, "train", data_dir)
    if t.k_shot:
        train_sents = k_shot(train_sents, t.k_shot, t.seed)
    train_sents = _limit(train_sents, config)
    dev_sents = load_split(target, "dev", data_dir)
    # The label file too (read once, so "auto" notes a missing one once).
    descriptions = label_descriptions(config)

    source, source_dir, source_seconds, cached = pretrain_source(config, data_dir, runs, progress)

    start = time.perf_counter()

    names = swap_names(config, train_sents, data_dir) if _needs_swap_names(config) else None
    # FactMix steps-matched: every fine-tuning gets the update steps of a pass over the originals.
    steps = n_batches(len(train_sents), t.batch_size) if config.augment.steps_matched else None

    def fine_tune(sentences: Sequence[Sentence]) -> tuple[Tagger, int, SpanScores, list[EpochLog]]:
        set_seed(t.seed)
        model = build_target_model(config, labels, source)
        if descriptions is not None:
            model.init_label_rows(descriptions, config.tagger.label_init_scale)
        if config.fusion.enabled:  # label graphs always come from the original train set
            model.fusion = _fusion_module(config, model, source, source_dir, train_sents, data_dir)
        if names is not None and model.causal is not None:
            model.causal.set_swap_names(names, t.seed)
        return model, *fit(model, sentences, dev_sents, config, progress, steps)

    augment_record = None
    if config.augment.method == "factmix":  # FactMix semi-facts (cdlm/experiments/factmix.py)
        from cdlm.experiments.factmix import factmix_fine_tune

        (model, best_epoch, dev_scores, history), augment_record = factmix_fine_tune(
            train_sents, config, fine_tune, data_dir, runs
        )
    else:
        model, best_epoch, dev_scores, history = fine_tune(train_sents)
    source = None  # free the source model (not `del`: fine_tune closes over the name)
    alpha_sweep = None
    if config.causal.explicit and config.causal.alpha_grid:  # debiasing strength, dev only
        from cdlm.experiments.debias import sweep_alpha

        _, points, dev_scores = sweep_alpha(model, dev_sents, config.causal.alpha_grid)
        alpha_sweep = [p.model_dump() for p in points]
    target_seconds = time.perf_counter() - start

    # Saved before any test scoring: a dataset without a test split still gets its model.
    model.save(out, extra={"best_epoch": best_epoch, "dev_f1": dev_scores.f1})
    test_scores, test_speed, test_counts = None, None, None
    if evaluate_test and split_path(target, "test", data_dir).is_file():
        from cdlm.metrics import sentence_counts

        test_sents = load_split(target, "test", data_dir)
        test_scores, seconds, test_pred = score_model(model, test_sents)
        test_speed = len(test_sents) / seconds if seconds > 0 else 0.0
        # Per-sentence span counts: the suite's paired bootstrap intervals need them.
        test_counts = sentence_counts([s.tags for s in test_sents], test_pred)
    result = TrainResult(
        checkpoint=str(out),
        target=domain_name(target),
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
