"""The training loop, apart from any recipe: batches, optimizer and schedule, epochs, early
stopping on a dev score, progress.

A recipe says *what* an epoch is and *how* it is scored; this module does the rest the same way
for all of them. An epoch is a list of steps, each ``(tagger, batch)``: the tagger is a whole
model or one head's view of a multi-head model (the heads share the weights in ``params``), so a
single-target run (:mod:`cdlm.experiments.train`), the source pre-training, the multi-domain
default model (:mod:`cdlm.experiments.default_model`) and any later multi-source recipe plan
their epochs their own way and share one loop: :func:`fit_epochs`.

Reproducibility: a recipe seeds the global generators with :func:`set_seed` before it builds its
model, and draws its batches from its own :class:`random.Random`, so the same seed gives the
same batches, the same losses and the same weights.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence

if TYPE_CHECKING:
    import torch

# One optimiser step: a tagger (a model or one head's view) and the batch it trains on.
Step = tuple[Any, list[Sentence]]
# epoch number (1-based) -> that epoch's steps, in order.
EpochPlan = Callable[[int], Sequence[Step]]


@dataclass
class EpochRun:
    """What one epoch of training did, for the recipe's evaluation hook."""

    epoch: int
    loss: float  # mean training loss over the epoch's steps
    terms: dict[str, float]  # mean of each weighted loss term ("ner", "gm", ...)
    steps: int
    started: float  # time.perf_counter() when the epoch began

    @property
    def seconds(self) -> float:
        """Wall time since the epoch began (read after scoring, it counts the scoring too)."""
        return time.perf_counter() - self.started


# The evaluation hook: an epoch's run -> (dev score, higher is better; a status line).
Evaluate = Callable[[EpochRun], tuple[float, str]]


@dataclass(frozen=True)
class Stopping:
    """At most ``epochs`` epochs; with an evaluation hook, stop after ``patience`` epochs
    without a gain above ``min_delta`` and keep the best epoch's weights."""

    epochs: int
    patience: int = 0
    min_delta: float = 0.0


def set_seed(seed: int) -> None:
    """Seed every generator training touches; CPU kernels used here are deterministic."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def batch_stream(
    sentences: Sequence[Sentence], size: int, rng: random.Random
) -> Iterator[list[Sentence]]:
    """:func:`batches` pass after pass, without end: an epoch takes the next N of them (one
    pass when N is the pass length, the same batches in the same order as a fresh pass)."""
    while True:
        yield from batches(sentences, size, rng)


def n_batches(n_sentences: int, size: int) -> int:
    return (n_sentences + size - 1) // size


def stream_plan(
    model: Any, sentences: Sequence[Sentence], size: int, rng: random.Random, per_epoch: int
) -> EpochPlan:
    """Each epoch, the next ``per_epoch`` batches of :func:`batch_stream` through ``model``:
    one pass per epoch when ``per_epoch`` is a pass's length, more or fewer when a recipe
    fixes the number of update steps (FactMix's steps-matched mode)."""
    chunks = batch_stream(sentences, size, rng)
    return lambda _epoch: [(model, next(chunks)) for _ in range(per_epoch)]


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


def make_optimizer(model: torch.nn.Module, config: CdlmConfig, steps_per_epoch: int):
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
    """Rich progress bars on stderr (a no-op when disabled)."""
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


def train_step(
    model: Any,
    chunk: list[Sentence],
    params: torch.nn.Module,
    config: CdlmConfig,
    optim: tuple[Any, Any],
) -> Any:
    """One optimiser step of ``model`` on ``chunk`` (clipping the gradients of all ``params``);
    returns the tagger's output, whose losses the epoch averages."""
    import torch

    optimizer, scheduler = optim
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
    return out


def train_steps(
    steps: Sequence[Step],
    params: torch.nn.Module,
    config: CdlmConfig,
    optim: tuple[Any, Any],
    progress,
    description: str,
) -> tuple[float, dict[str, float]]:
    """One optimiser step per ``(tagger, batch)`` (several taggers may share weights, as the
    heads of a multi-domain model do; ``params`` holds them all, for gradient clipping);
    returns the mean training loss and the mean of each loss term."""
    task = progress.add_task(description, total=len(steps), status="")
    total, done = 0.0, 0
    sums: dict[str, float] = {}
    for model, chunk in steps:
        out = train_step(model, chunk, params, config, optim)
        total += out.loss.item()
        for name, value in out.losses.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        done += 1
        progress.update(task, advance=1, status=f"loss {total / done:.4f}")
        if plain_progress(progress) and done % max(len(steps) // 10, 1) == 0:
            # Logs and CI have no live bar: a line every 10% instead.
            progress.console.print(f"{description}: {done}/{len(steps)} loss {total / done:.4f}")
    progress.remove_task(task)
    return total / max(done, 1), {name: value / max(done, 1) for name, value in sums.items()}


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


def fit_epochs(
    params: torch.nn.Module,
    plan: EpochPlan,
    steps_per_epoch: int,
    config: CdlmConfig,
    stopping: Stopping,
    evaluate: Evaluate | None = None,
    *,
    progress: bool = True,
    label: str = "epoch",
) -> tuple[int, list[EpochRun]]:
    """Train ``params`` epoch after epoch, each epoch the steps ``plan(epoch)`` gives.

    The optimizer and schedule (:func:`make_optimizer`) are sized by ``steps_per_epoch``. With
    ``evaluate``, each epoch is scored, early stopping follows ``stopping`` and the best epoch's
    weights are left in ``params``; without, every epoch runs and the last weights stay.
    Returns (best or last epoch, every epoch's run)."""
    optim = make_optimizer(params, config, steps_per_epoch)
    runs: list[EpochRun] = []

    def one_epoch(epoch: int, bar: Any) -> EpochRun:
        started = time.perf_counter()
        steps = plan(epoch)
        description = f"{label} {epoch}/{stopping.epochs}"
        loss, terms = train_steps(steps, params, config, optim, bar, description)
        runs.append(EpochRun(epoch, loss, terms, len(steps), started))
        return runs[-1]

    if evaluate is None:
        with progress_bars(progress) as bar:
            for epoch in range(1, stopping.epochs + 1):
                one_epoch(epoch, bar)
        return len(runs), runs
    best = keep_best(
        params,
        stopping.epochs,
        stopping.patience,
        lambda epoch, bar: evaluate(one_epoch(epoch, bar)),
        progress,
        label,
        stopping.min_delta,
    )
    return best, runs
