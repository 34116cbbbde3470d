"""Multi-source training: the target fine-tuned beside auxiliary labelled domains, each through
its own head over one shared encoder (docs/DESIGN.md, "Multi-source and unlabeled text").

The recipe (:func:`train_multisource`; settings in ``multisource`` of :mod:`cdlm.config`):

1. **Read everything first**: the target as ``cdlm train`` reads it (K-shot sample, first
   ``train.max_train_sentences``), and every auxiliary's labels (all its splits), train split
   and dev split, so an unknown name, a folder without train/dev or a malformed file is one line
   before minutes of training. An auxiliary's dev split is only checked: it never scores.
2. **Source pre-training** on ``train.source`` (CoNLL-2003): the cached source model of
   ``cdlm train`` (:func:`cdlm.experiments.train.pretrain_source`).
3. **The model**: a :class:`~cdlm.model.bundle.TaggerBundle` on the source encoder, a head for
   the target and one per auxiliary. Label semantics on every head: the target's rows start
   as ``cdlm train`` starts them (``tagger.label_init``); an auxiliary's from its label file's
   descriptions where one exists, its type names otherwise ("descriptions", which is an error
   for a target without a file, falls back so for an auxiliary). A head with the source's tags
   (a CoNLL auxiliary) keeps the trained source head instead. ``multisource.tie_types`` then
   ties the rows of the types that several label sets share (:meth:`TaggerBundle.tie_types`).
4. **Epochs**: a pass over the target train split (the batches ``cdlm train`` draws for the
   seed) plus each auxiliary's share of sentences (:func:`epoch_shares`: at most
   ``multisource.max_sentences``, 200 by default, each, shared out by ``multisource.mixing``;
   the default, "proportional", takes min(size, 200) of each, so no sentence recurs within an
   epoch and no temperature is assumed before one is measured on dev), each batch one
   domain through its own head, in a shuffled order, on the loop of
   :mod:`cdlm.experiments.loop`. After each epoch the target head alone is scored on the
   target's dev split: early stopping (``train.target_epochs``, ``patience``, ``min_delta``)
   and the kept epoch follow that score only.
5. **Saved**: the target head only (below), with ``scores.json`` (dev and test scores, the
   per-epoch history with each epoch's wall time, the total wall time, the auxiliaries and
   their per-epoch shares).

What the saved model holds: the target's tagger alone, as the standalone checkpoint ``cdlm
train`` writes (format 1: encoder, casing features, the target head; its config has the
``multisource`` section, so its run hash is its own). Why: the epoch is chosen on the target's
dev split, so only the target head is known to be good at the kept weights; an auxiliary head
there is a by-product never measured, and offering it as a ``--domain`` would invite its use
(the default model is the multi-domain model that is measured per head). A plain target
checkpoint is also what every consumer of ``cdlm train`` runs reads (``Tagger.load``, ``cdlm
eval``, suites, the alpha sweep, ``CDLM.from_pretrained``, which predicts with the target's
labels), and the heads it drops are a few kilobytes, not a reason to keep them.

No auxiliaries (``auxiliaries=[]``, ``--with none``) is ``cdlm train`` itself: :func:`train` is
called, so the weights, the folder and the run hash are today's single-target run's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence
from cdlm.errors import ConfigError, DataError
from cdlm.experiments.loop import (
    EpochPlan,
    Step,
    Stopping,
    batch_stream,
    fit_epochs,
    n_batches,
    set_seed,
)
from cdlm.experiments.train import (
    EpochLog,
    TargetData,
    TrainResult,
    epoch_scorer,
    label_descriptions,
    load_target,
    pretrain_source,
    score_test_split,
    train,
)
from cdlm.metrics import SpanScores
from cdlm.results import write_json
from cdlm.runs import config_hash, run_name, runs_dir, target_of

if TYPE_CHECKING:
    from cdlm.model.bundle import TaggerBundle
    from cdlm.model.tagger import Tagger


class AuxiliaryRecord(BaseModel):
    """One auxiliary domain of a run: its head, data, size and share of each epoch."""

    head: str
    data: str
    types: int  # entity types of its label set
    train_sentences: int
    sentences_per_epoch: int  # its share (epoch_shares)


class MultiSourceResult(TrainResult):
    """:class:`TrainResult` (``history`` has each epoch's wall time, dev scoring included) plus
    what the auxiliaries added, and the call's wall time, to compare the cost with a
    single-target run's."""

    auxiliaries: list[AuxiliaryRecord] = []
    tied_types: list[str] = []
    steps_per_epoch: dict[str, int] = {}  # update steps of each head per epoch
    total_seconds: float = 0.0  # the whole call: reading, source, training, scoring, saving


ALL = "all"  # `--with all`: every labelled domain cdlm knows by name, less the target


@dataclass
class Auxiliary:
    """An auxiliary domain, read before any training."""

    head: str
    data: str  # the domain as given (name or folder)
    labels: list[str]
    train: list[Sentence]
    descriptions: dict[str, str] | None  # head rows' start (None: random rows)


def train_multisource(
    config: CdlmConfig,
    out: Path | str | None = None,
    *,
    target: str | None = None,
    auxiliaries: Sequence[str] | None = None,
    data_dir: Path | str | None = None,
    runs: Path | str | None = None,
    progress: bool = True,
    evaluate_test: bool = True,
) -> MultiSourceResult:
    """Train ``target`` (None: ``train.target``) beside ``auxiliaries`` (None:
    ``multisource.auxiliaries``) and save the target's model to ``out`` (None: the run
    folder ``<runs>/<domain>__<variant>__seed<N>__<hash>``); see the module docstring. No
    auxiliaries is :func:`cdlm.experiments.train.train`, exactly."""
    import torch

    start = time.perf_counter()
    cfg = multisource_config(config, target, auxiliaries)
    if not cfg.multisource.auxiliaries:
        single = train(cfg, out, data_dir, runs, progress, evaluate_test)
        return MultiSourceResult(**single.model_dump(), total_seconds=time.perf_counter() - start)
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        return _train(cfg, out, data_dir, runs, progress, evaluate_test, start)
    finally:
        torch.set_num_threads(threads)  # a library call leaves the process as it found it


def multisource_config(
    config: CdlmConfig, target: str | None, auxiliaries: Sequence[str] | None
) -> CdlmConfig:
    """The run's config: ``config`` with the target and auxiliaries set (they are what the
    checkpoint saves and the run hash holds); a module a bundle cannot hold is one line."""
    cfg = config.model_copy(deep=True)
    if target is not None:
        cfg.train.target = target
    if auxiliaries is not None:
        cfg.multisource.auxiliaries = list(auxiliaries)
    target = target_of(cfg)  # no target: one line
    cfg.multisource.auxiliaries = expand_auxiliaries(target, cfg.multisource.auxiliaries)
    if cfg.multisource.auxiliaries:
        on = [
            name
            for name, is_on in [
                ("fusion.enabled", cfg.fusion.enabled),
                ("causal.explicit", cfg.causal.explicit),
                ("causal.implicit", cfg.causal.implicit),
                ("augment.method", cfg.augment.method != "none"),
            ]
            if is_on
        ]
        if on:
            raise ConfigError(
                f"multisource.auxiliaries: multi-source training trains plain heads; switch off "
                f"{', '.join(on)} (or train without auxiliaries)"
            )
    return cfg


def expand_auxiliaries(target: str, auxiliaries: Sequence[str]) -> list[str]:
    """``ALL`` in the list stands for CoNLL-2003 and the five CrossNER domains, less the target
    and those the list names itself; the other names are kept as given (a repeat is still the
    one-line error of :func:`head_names`)."""
    from cdlm.data.registry import DOMAINS

    named = {domain_key(n) for n in [target, *auxiliaries] if n != ALL}
    out: list[str] = []
    for name in auxiliaries:
        if name != ALL:
            out.append(name)
            continue
        out += [d for d in DOMAINS if domain_key(d) not in named and d not in out]
    return out


def domain_key(domain: str) -> str:
    """What a domain is, whatever its spelling: a registered name, else its folder's path."""
    from cdlm.data.registry import DOMAINS, PAPER_DATASETS

    if domain in DOMAINS or domain in PAPER_DATASETS:
        return domain
    return str(Path(domain).expanduser().resolve())


def head_names(target: str, auxiliaries: Sequence[str]) -> list[str]:
    """A head name per domain, the target's first: the domain's short name, made a valid module
    name; the target or a domain listed twice among the auxiliaries is one line."""
    import torch

    from cdlm.data.registry import domain_name

    keys = [domain_key(target)]
    names: list[str] = []
    for domain in [target, *auxiliaries]:
        if names:  # an auxiliary
            key = domain_key(domain)
            if key in keys:
                what = "is the target" if key == keys[0] else "is listed twice"
                raise ConfigError(f"multisource.auxiliaries: {domain!r} {what}")
            keys.append(key)
        base = domain_name(domain).replace(".", "_") or "domain"
        name, n = base, 1
        while name in names or hasattr(torch.nn.ModuleDict, name):
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


def head_descriptions(config: CdlmConfig, domain: str) -> dict[str, str] | None:
    """An auxiliary head's starting texts: ``tagger.label_init`` as for a target, except that
    "descriptions" takes the type names where the domain has no label file."""
    cfg = config.model_copy(deep=True)
    cfg.train.target = domain
    if cfg.tagger.label_init == "descriptions":
        cfg.tagger.label_init = "auto"
    return label_descriptions(cfg)


def load_auxiliary(
    config: CdlmConfig, domain: str, head: str, data_dir: Path | str | None
) -> Auxiliary:
    """An auxiliary's labels (every split read), train split (first
    ``train.max_train_sentences``) and dev split (read to check it); a missing split or a
    malformed file is one line naming the domain and the file (FILE:LINE where the reader
    knows it)."""
    from cdlm.data.registry import domain_dir, domain_labels, folder_split_file, load_split

    try:
        folder = domain_dir(domain, data_dir)
        for split in ("train", "dev"):
            if folder_split_file(folder, split) is None:
                raise DataError(
                    f"{folder}: no {split} split ({split}.txt or {split}.jsonl); an auxiliary "
                    "needs train and dev"
                )
        labels = domain_labels(domain, data_dir)
        train_sents = load_split(domain, "train", data_dir)[: config.train.max_train_sentences]
        load_split(domain, "dev", data_dir)
    except DataError as exc:
        raise DataError(f"auxiliary {domain!r}: {exc}") from None
    if not train_sents:
        raise DataError(f"auxiliary {domain!r}: {folder}: the train split has no sentences")
    descriptions = head_descriptions(config, domain)
    return Auxiliary(head, domain, labels, train_sents, descriptions)


def epoch_shares(
    sizes: dict[str, int], cap: int | None, mixing: str, temperature: float
) -> dict[str, int]:
    """Sentences of each auxiliary per epoch. Capped sizes ``c = min(size, cap)``;
    "proportional" draws ``c`` of each; "equal" and "temperature" share out the same total
    ``sum(c)`` equally or in proportion to ``c ** (1 / temperature)`` (a small domain's
    sentences then recur within an epoch). No share exceeds the largest ``c``, hence ``cap``."""
    capped = {name: min(size, cap) if cap else size for name, size in sizes.items()}
    if mixing == "proportional":
        return capped
    power = 0.0 if mixing == "equal" else 1.0 / temperature
    weights = {name: c**power for name, c in capped.items()}
    total, norm = sum(capped.values()), sum(weights.values())
    return {name: max(1, round(total * w / norm)) for name, w in weights.items()}


def build_bundle(
    config: CdlmConfig,
    target: tuple[str, TargetData],
    auxiliaries: Sequence[Auxiliary],
    source: Tagger | None,
) -> tuple[TaggerBundle, list[str]]:
    """The seeded model: a head per domain on ``source``'s encoder, label semantics on each new
    head, then tied types when asked. Returns (bundle, tied types)."""
    from cdlm.model.bundle import Head, TaggerBundle

    name, data = target
    heads = {name: Head(labels=data.labels, data=target_of(config))}
    heads |= {a.head: Head(labels=a.labels, data=a.data) for a in auxiliaries}
    starts = {name: data.descriptions} | {a.head: a.descriptions for a in auxiliaries}
    set_seed(config.train.seed)
    bundle = TaggerBundle.create(config, heads, source, default=name)
    for head, spec in heads.items():
        from_source = source is not None and spec.labels == source.labels
        if starts[head] is not None and not from_source:
            bundle.tagger(head).init_label_rows(starts[head], config.tagger.label_init_scale)
    tied = bundle.tie_types() if config.multisource.tie_types else []
    return bundle, tied


def epoch_planner(
    bundle: TaggerBundle,
    target: tuple[str, list[Sentence]],
    auxiliaries: Sequence[Auxiliary],
    shares: dict[str, int],
    config: CdlmConfig,
) -> tuple[EpochPlan, dict[str, int]]:
    """(plan, steps per epoch of each head): an epoch is the target's next pass (the batches
    ``cdlm train`` draws for the seed) and each auxiliary's next ``shares[head]`` sentences
    from its own seeded stream, every batch through its domain's head, shuffled."""
    t = config.train
    size, seed = t.batch_size, t.seed
    name, sentences = target
    streams = {name: batch_stream(sentences, size, random.Random(seed))}
    counts = {name: n_batches(len(sentences), size)}
    for aux in auxiliaries:
        streams[aux.head] = batch_stream(aux.train, size, random.Random(f"{seed}:{aux.head}"))
        counts[aux.head] = n_batches(shares[aux.head], size)
    views = {head: bundle.tagger(head) for head in streams}
    order = random.Random(f"{seed}:mix")

    def plan(_epoch: int) -> list[Step]:
        steps = [(views[h], next(streams[h])) for h, n in counts.items() for _ in range(n)]
        order.shuffle(steps)
        return steps

    return plan, counts


def fit_on_target_dev(
    bundle: TaggerBundle,
    plan: EpochPlan,
    steps_per_epoch: int,
    target: tuple[str, list[Sentence]],
    config: CdlmConfig,
    progress: bool,
) -> tuple[int, SpanScores, list[EpochLog]]:
    """Train epoch after epoch; after each, the target head alone on the target's dev split:
    early stopping and the kept epoch (left in ``bundle``) follow that score only."""
    name, dev = target
    view = bundle.tagger(name)
    history: list[EpochLog] = []
    dev_scores: list[SpanScores] = []

    def score_target() -> SpanScores:
        from cdlm.experiments import evaluate as ev  # looked up per call: tests spy on it

        return ev.score_model(view, dev)[0]

    evaluate = epoch_scorer(score_target, history, dev_scores, "target dev")

    t = config.train
    stopping = Stopping(t.target_epochs, t.patience, t.min_delta)
    best, _ = fit_epochs(
        bundle, plan, steps_per_epoch, config, stopping, evaluate, progress=progress, label="epoch"
    )
    bundle.eval()
    return best, dev_scores[best - 1], history


def read_data(
    cfg: CdlmConfig, data_dir: Path | str | None
) -> tuple[str, TargetData, list[Auxiliary]]:
    """The target's head name and data, and every auxiliary, read before any training."""
    ms = cfg.multisource
    names = head_names(target_of(cfg), ms.auxiliaries)
    data = load_target(cfg, data_dir)
    auxes = [
        load_auxiliary(cfg, d, h, data_dir) for d, h in zip(ms.auxiliaries, names[1:], strict=True)
    ]
    return names[0], data, auxes


def _train(
    cfg: CdlmConfig,
    out: Path | str | None,
    data_dir: Path | str | None,
    runs: Path | str | None,
    progress: bool,
    evaluate_test: bool,
    start: float,
) -> MultiSourceResult:
    name, data, auxes = read_data(cfg, data_dir)
    ms = cfg.multisource
    sizes = {a.head: len(a.train) for a in auxes}
    shares = epoch_shares(sizes, ms.max_sentences, ms.mixing, ms.temperature)
    source, source_dir, source_seconds, cached = pretrain_source(cfg, data_dir, runs, progress)
    fine_start = time.perf_counter()
    bundle, tied = build_bundle(cfg, (name, data), auxes, source)
    del source
    plan, counts = epoch_planner(bundle, (name, data.train), auxes, shares, cfg)
    best, dev, history = fit_on_target_dev(
        bundle, plan, sum(counts.values()), (name, data.dev), cfg, progress
    )
    result = MultiSourceResult(
        checkpoint="",
        target=name,
        variant=cfg.train.variant,
        seed=cfg.train.seed,
        source_checkpoint=str(source_dir) if source_dir else None,
        source_cached=cached,
        source_seconds=source_seconds,
        target_seconds=time.perf_counter() - fine_start,
        best_epoch=best,
        dev=dev,
        test=None,
        test_sentences_per_s=None,
        history=history,
        auxiliaries=[
            AuxiliaryRecord(
                head=a.head,
                data=a.data,
                types=(len(a.labels) - 1) // 2,
                train_sentences=len(a.train),
                sentences_per_epoch=shares[a.head],
            )
            for a in auxes
        ],
        tied_types=tied,
        steps_per_epoch=counts,
    )
    return save_run(bundle.export(name), result, cfg, out, runs, data_dir, evaluate_test, start)


def save_run(
    model: Tagger,
    result: MultiSourceResult,
    cfg: CdlmConfig,
    out: Path | str | None,
    runs: Path | str | None,
    data_dir: Path | str | None,
    evaluate_test: bool,
    start: float,
) -> MultiSourceResult:
    """The target's model, then its test scores, then ``scores.json`` (last: its presence
    means the run finished), as ``cdlm train`` writes them."""
    from cdlm.provenance import stamp

    folder = Path(out) if out is not None else default_folder(cfg, runs)
    extra = {
        "best_epoch": result.best_epoch,
        "dev_f1": result.dev.f1,
        "auxiliaries": [a.data for a in result.auxiliaries],
        "tied_types": result.tied_types,
    }
    model.save(folder, extra=extra)
    if evaluate_test:
        test, speed, counts = score_test_split(model, cfg, data_dir)
        result.test, result.test_sentences_per_s, result.test_counts = test, speed, counts
    provenance = stamp(seed=cfg.train.seed, config=cfg.model_dump(mode="json"))
    result.checkpoint = str(folder)
    result.total_seconds = time.perf_counter() - start
    write_json(folder / "scores.json", {**result.model_dump(mode="json"), "provenance": provenance})
    return result


def default_folder(cfg: CdlmConfig, runs: Path | str | None) -> Path:
    """``<runs>/<domain>__<variant>__seed<N>__<hash>``: the hash keeps a multi-source run
    apart from the single-target run of the same target, variant and seed."""
    return runs_dir(runs) / f"{run_name(cfg)}__{config_hash(cfg)}"
