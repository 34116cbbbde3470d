"""The training loop apart from any recipe (cdlm/experiments/loop.py), on toy taggers: no
encoder, so every rule (batches, schedule, early stopping, best weights, several heads over
shared weights, seeds) is checked in milliseconds."""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from cdlm.config import load_config
from cdlm.data.bio import Sentence
from cdlm.experiments.loop import (
    EpochRun,
    Stopping,
    batch_stream,
    batches,
    fit_epochs,
    lr_factor,
    set_seed,
    stream_plan,
)

REPO = Path(__file__).resolve().parents[2]


def _sentences(n: int) -> list[Sentence]:
    return [Sentence(tokens=(f"w{i}",) * (1 + i % 5), tags=("O",) * (1 + i % 5)) for i in range(n)]


@dataclass
class _Batch:
    x: torch.Tensor

    def to(self, device: torch.device) -> _Batch:
        return _Batch(self.x.to(device))


@dataclass
class _Out:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


class _Toy(nn.Module):
    """A tagger-shaped toy: an "encoder" shared by every head and a head of its own; the loss
    of a batch pulls the head's output towards the batch's size."""

    def __init__(self, encoder: nn.Linear, target: float = 0.0) -> None:
        super().__init__()
        self.encoder, self.head, self.target = encoder, nn.Linear(2, 1), target

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def builder(self, tokens: list, tags: list) -> _Batch:
        return _Batch(torch.tensor([[float(len(t)), 1.0] for t in tokens]))

    def forward(self, batch: _Batch) -> _Out:
        pred = self.head(self.encoder(batch.x)).squeeze(-1)
        ner = ((pred - self.target - batch.x[:, 0]) ** 2).mean()
        extra = 0.1 * self.head.weight.pow(2).sum()
        return _Out(ner + extra, {"ner": ner, "reg": extra})


def _config(**extra):
    overrides = {"train.target_epochs": 4, "train.batch_size": 4, "train.head_lr": 0.05}
    return load_config(None, {**overrides, "train.lr": 0.05, **extra})


def _scripted(scores: list[float]):
    """An evaluation hook that returns the next scripted dev score."""
    seen: list[EpochRun] = []

    def evaluate(epoch: EpochRun) -> tuple[float, str]:
        seen.append(epoch)
        return scores[epoch.epoch - 1], f"loss {epoch.loss:.3f}"

    return evaluate, seen


def test_lr_factor_warms_up_then_decays_to_the_floor() -> None:
    assert [lr_factor(s, 3, 10, "linear", 0.0) for s in range(3)] == [0.25, 0.5, 0.75]
    assert lr_factor(3, 3, 10, "linear", 0.0) == 1.0
    assert lr_factor(10, 3, 10, "linear", 0.1) == pytest.approx(0.1)
    assert lr_factor(50, 3, 10, "cosine", 0.2) == pytest.approx(0.2)  # flat after the horizon
    assert lr_factor(50, 0, 10, "none", 0.2) == 1.0


def test_batches_cover_every_sentence_once_and_a_stream_repeats_fresh_passes() -> None:
    sents = _sentences(23)
    one = list(batches(sents, 4, random.Random(3)))
    assert sorted(id(s) for b in one for s in b) == sorted(id(s) for s in sents)
    assert [len(b) for b in one].count(3) == 1 and len(one) == 6
    rng = random.Random(3)
    two_passes = list(batches(sents, 4, rng)) + list(batches(sents, 4, rng))
    stream = batch_stream(sents, 4, random.Random(3))
    assert [next(stream) for _ in range(12)] == two_passes


def test_stream_plan_takes_the_next_n_batches_each_epoch() -> None:
    model = object()
    plan = stream_plan(model, _sentences(8), 4, random.Random(0), 3)  # 3 steps, 2 per pass
    first, second = plan(1), plan(2)
    assert len(first) == len(second) == 3 and all(m is model for m, _ in first + second)
    expected = list(batches(_sentences(8), 4, random.Random(0)))
    assert [b for _, b in first[:2]] == expected


def test_early_stopping_keeps_the_best_epochs_weights() -> None:
    set_seed(0)
    model = _Toy(nn.Linear(2, 2))
    plan = stream_plan(model, _sentences(16), 4, random.Random(0), 4)
    evaluate, seen = _scripted([0.1, 0.5, 0.4, 0.3, 0.9, 1.0])
    states = {}

    def remember(epoch: EpochRun) -> tuple[float, str]:
        states[epoch.epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return evaluate(epoch)

    best, runs = fit_epochs(
        model, plan, 4, _config(), Stopping(6, patience=2), remember, progress=False
    )
    assert best == 2 and [r.epoch for r in runs] == [1, 2, 3, 4]  # 2 epochs without a gain
    assert all(r.steps == 4 and set(r.terms) == {"ner", "reg"} for r in runs)
    assert runs[-1].loss < runs[0].loss
    for name, value in model.state_dict().items():
        assert torch.equal(value, states[2][name]), name


def test_min_delta_gain_does_not_restart_patience_but_best_is_kept() -> None:
    set_seed(0)
    model = _Toy(nn.Linear(2, 2))
    plan = stream_plan(model, _sentences(8), 4, random.Random(0), 2)
    evaluate, _ = _scripted([0.5, 0.51, 0.505, 0.9])
    stopping = Stopping(4, patience=2, min_delta=0.02)
    best, runs = fit_epochs(model, plan, 2, _config(), stopping, evaluate, progress=False)
    assert len(runs) == 3 and best == 2  # 0.51 is the best, but no real gain over 0.5


def test_without_evaluation_every_epoch_runs_and_the_last_weights_stay() -> None:
    set_seed(0)
    model = _Toy(nn.Linear(2, 2))
    plan = stream_plan(model, _sentences(8), 4, random.Random(0), 2)
    last, runs = fit_epochs(model, plan, 2, _config(), Stopping(3), progress=False)
    assert last == 3 and [r.epoch for r in runs] == [1, 2, 3]


def test_heads_over_shared_weights_train_in_one_loop() -> None:
    """A multi-head recipe's epoch: (head view, batch) steps of several heads that share the
    encoder; every head and the shared weights move, each step through its own head."""
    set_seed(0)
    shared = nn.Linear(2, 2)
    heads = nn.ModuleDict({"a": _Toy(shared, 0.0), "b": _Toy(shared, 5.0)})
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    sents = _sentences(8)

    def plan(epoch: int) -> list:
        rng = random.Random(epoch)
        return [(heads[n], b) for n in ("a", "b") for b in batches(sents, 4, rng)]

    _, runs = fit_epochs(heads, plan, 4, _config(), Stopping(2), progress=False)
    assert [r.steps for r in runs] == [4, 4]
    after = heads.state_dict()
    for name in ("a.head.weight", "b.head.weight", "a.encoder.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert torch.equal(after["a.encoder.weight"], after["b.encoder.weight"])  # shared


def test_same_seed_same_losses() -> None:
    def losses() -> list[float]:
        set_seed(7)
        model = _Toy(nn.Linear(2, 2))
        plan = stream_plan(model, _sentences(12), 4, random.Random(7), 3)
        _, runs = fit_epochs(model, plan, 3, _config(), Stopping(3), progress=False)
        return [r.loss for r in runs]

    assert losses() == losses()


@pytest.mark.parametrize(
    "module",
    ["cdlm/experiments/loop.py", "cdlm/experiments/train.py", "cdlm/experiments/default_model.py"],
)
def test_loop_and_recipes_have_short_functions(module: str) -> None:
    """Each function of the loop and of the recipes on top of it reads on one screen."""
    tree = ast.parse((REPO / module).read_text(encoding="utf-8"))
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []
