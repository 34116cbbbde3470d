"""The default model: one encoder, a head per domain (news + the five CrossNER domains), built by
``cdlm model build-default`` into ``<cdlm home>/models/default-build``; ``cdlm model ship``
(:mod:`cdlm.experiments.ship`) packs a build into the package as the shipped default model.

The recipe (``default_model`` in :mod:`cdlm.config`), seeded:

1. **Source pre-training** on CoNLL-2003: the cached source model of ``cdlm train``
   (:func:`cdlm.experiments.train.pretrain_source`), so a machine that trained any target
   before reuses it. Its head becomes the news head.
2. **Joint fine-tuning** of a :class:`~cdlm.model.bundle.TaggerBundle` whose new heads start
   from label semantics (:func:`start_label_rows`): each step is one batch
   of one domain through that domain's head; an epoch is every target train sentence once, plus
   ``source_mix`` CoNLL batches per target batch (drawn in turn from the whole CoNLL train
   split) so the news head stays valid while the shared encoder learns the new domains; the
   order of the batches is shuffled. Dev F1 of every head after each epoch (on the first
   ``dev_sentences`` of each dev split); the epoch with the best *mean* dev F1 is
   kept, and ``patience`` epochs without a gain stop it.
3. Every head is scored on its full dev and test splits; the scores go into the model folder
   (``scores.json``) and into ``evals/results/default_model.{json,md}`` with the command,
   config, seed and commit.

Idempotent: the folder's ``recipe.json`` holds a hash of the recipe, the training config, the
encoder and the SHA-256 of every data file used; the same hash is a skip (``force`` rebuilds).
The model is written to a temporary folder and moved into place at the end, so an interrupted
build never leaves a half model where ``cdlm predict`` would find it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence
from cdlm.errors import ConfigError
from cdlm.experiments.evaluate import scores_markdown
from cdlm.experiments.loop import EpochRun, Step, Stopping, batches, fit_epochs, set_seed
from cdlm.experiments.train import pretrain_source
from cdlm.metrics import SpanScores, span_scores
from cdlm.results import RESULTS_DIR, write_json, write_results
from cdlm.runs import model_dir

if TYPE_CHECKING:
    from cdlm.model.bundle import Head, TaggerBundle

RECIPE_FILE = "recipe.json"
# What every saved model folder holds (cdlm.model.tagger.save_checkpoint): a folder with both
# is a cdlm model that a build may replace.
MODEL_FILES = ("config.json", "model.safetensors")
SCORES_FILE = "scores.json"
RESULTS_NAME = "default_model"


class HeadScores(BaseModel):
    domain: str  # head name
    data: str  # data domain
    dev: SpanScores
    test: SpanScores | None  # None when the dataset has no test split


class JointEpochLog(BaseModel):
    epoch: int
    train_loss: float
    dev_f1: dict[str, float]  # per head, on the early-stopping dev subsets
    mean_dev_f1: float
    seconds: float


class BuildResult(BaseModel):
    """What a build did (or that it was skipped), where the model is and how good each head is."""

    path: str
    skipped: bool
    recipe: str  # hash of everything that shapes the model
    heads: list[HeadScores] = []
    best_epoch: int = 0
    history: list[JointEpochLog] = []
    source_checkpoint: str | None = None
    source_cached: bool = False
    source_seconds: float = 0.0  # pre-training time, as recorded when the source was trained
    fine_tune_seconds: float = 0.0
    build_seconds: float = 0.0  # this command's wall time (source pre-training if not cached)


def data_files(cfg: CdlmConfig, data_dir: Path | str | None) -> dict[str, Path]:
    """Every split file the recipe reads, by ``<head>/<split>``; a missing data folder is the
    registry's one-line error (it names ``cdlm data download crossner``)."""
    from cdlm.data.registry import SPLITS, domain_dir

    files = {}
    for name, data in cfg.default_model.domains.items():
        folder = domain_dir(data, data_dir)
        for split in SPLITS:
            if (folder / f"{split}.txt").is_file():
                files[f"{name}/{split}"] = folder / f"{split}.txt"
    return files


def data_digests(files: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of each data file, by ``<head>/<split>``."""
    return {key: hashlib.sha256(path.read_bytes()).hexdigest() for key, path in files.items()}


def recipe_hash(cfg: CdlmConfig, files: dict[str, Path]) -> str:
    """Hash of the recipe, the training config, the encoder and the data's bytes."""
    return recipe_hash_of(cfg, data_digests(files))


def recipe_hash_of(cfg: CdlmConfig, digests: dict[str, str]) -> str:
    """:func:`recipe_hash` from the data's digests (the shipped model records them, so its
    recipe is checked on a machine without the data)."""
    from cdlm import __version__
    from cdlm.model.encoder import encoder_label
    from cdlm.runs import training_view

    recipe = cfg.default_model
    material = {
        "recipe": recipe.model_dump(mode="json", exclude=recipe.unhashed()),
        "training": training_view(bundle_config(cfg)),
        "encoder": encoder_label(cfg.encoder.name),
        "data": digests,
        "format": __version__,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def is_built(out: Path, recipe: str, files: dict[str, Path]) -> bool:
    """The folder holds a finished model built from this recipe: the same hash, or a saved
    config that hashes to it today (a default that changed in a part of the config the model
    does not use, e.g. a module that is off, never forces a rebuild)."""
    try:
        saved = json.loads((out / RECIPE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (out / "model.safetensors").is_file():
        return False
    if saved.get("recipe") == recipe:
        return True
    try:
        return recipe_hash(CdlmConfig.model_validate(saved.get("config")), files) == recipe
    except ValidationError:
        return False


def recorded_heads(out: Path) -> list[HeadScores]:
    """The head scores a finished build recorded (none when its scores file is unreadable)."""
    try:
        record = json.loads((out / SCORES_FILE).read_text(encoding="utf-8"))
        return BuildResult.model_validate(record).heads
    except (OSError, ValueError):
        return []


def bundle_config(cfg: CdlmConfig) -> CdlmConfig:
    """The config saved with the model: a plain tagger, variant ``default``. Its heads start
    with label semantics (``tagger.label_init``, as ``cdlm train`` and the multi-source recipe
    start theirs: measured +1.14 F1 on single targets, evals/results/crossner_final.md)."""
    out = cfg.model_copy(deep=True)
    out.fusion.enabled = False
    out.causal.explicit = out.causal.implicit = False
    out.augment.method = "none"
    out.train.variant = "default"
    out.train.seed = cfg.default_model.seed
    out.train.target = None
    return out


def build_default(
    cfg: CdlmConfig,
    out: Path | str | None = None,
    *,
    data_dir: Path | str | None = None,
    runs: Path | str | None = None,
    results_dir: Path | str | None = RESULTS_DIR,
    force: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build the default model into ``out`` (default: ``<cdlm home>/models/default-build``) unless
    the same recipe is built there already (see the module docstring)."""
    import torch

    start = time.perf_counter()
    out = Path(out) if out is not None else model_dir()
    check_replaceable(out)  # before minutes of training, and again before replacing it
    recipe = cfg.default_model
    if recipe.default not in recipe.domains:
        raise ConfigError(
            f"field 'default_model.default': {recipe.default!r} is not one of "
            f"{', '.join(recipe.domains)}"
        )
    if cfg.train.source not in recipe.domains.values():
        raise ConfigError(
            f"field 'default_model.domains': needs a head on the source {cfg.train.source!r}"
        )
    files = data_files(cfg, data_dir)
    key = recipe_hash(cfg, files)
    if not force and is_built(out, key, files):
        return BuildResult(path=str(out), skipped=True, recipe=key, heads=recorded_heads(out))
    threads = torch.get_num_threads()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    try:
        # Stamped before training: the commit and command that ran, not the checkout's state
        # after a half-hour build (which may have moved on).
        prov = provenance(cfg)
        result = _build(cfg, out, key, data_dir, runs, progress, start, prov)
    finally:
        torch.set_num_threads(threads)
    if results_dir is not None:
        write_build_results(result, cfg, Path(results_dir) / f"{RESULTS_NAME}.json", prov)
    return result


@dataclass
class JointData:
    """What the joint fine-tuning reads, read first: a bad file fails before minutes of
    training."""

    heads: dict[str, Head]
    train: dict[str, list[Sentence]]  # the first ``train.max_train_sentences`` of each split
    dev: dict[str, list[Sentence]]  # full dev splits, for the final scores
    early_dev: dict[str, list[Sentence]]  # the first ``dev_sentences``: early stopping
    source_head: str  # the head on the source domain (the news head)


def load_joint_data(cfg: CdlmConfig, data_dir: Path | str | None) -> JointData:
    from cdlm.data.registry import domain_labels, load_split
    from cdlm.model.bundle import Head

    recipe = cfg.default_model
    heads = {
        name: Head(labels=domain_labels(d, data_dir), data=d) for name, d in recipe.domains.items()
    }
    cap = cfg.train.max_train_sentences  # quick runs and tests: the first N of each train split
    train = {name: load_split(d, "train", data_dir)[:cap] for name, d in recipe.domains.items()}
    dev = {name: load_split(d, "dev", data_dir) for name, d in recipe.domains.items()}
    source_head = next(n for n, d in recipe.domains.items() if d == cfg.train.source)
    early_dev = {name: sents[: recipe.dev_sentences] for name, sents in dev.items()}
    return JointData(heads, train, dev, early_dev, source_head)


def _build(
    cfg: CdlmConfig,
    out: Path,
    key: str,
    data_dir: Path | str | None,
    runs: Path | str | None,
    progress: bool,
    start: float,
    prov: dict[str, Any],
) -> BuildResult:
    from cdlm.model.bundle import TaggerBundle

    recipe = cfg.default_model
    data = load_joint_data(cfg, data_dir)
    source, source_dir, source_seconds, cached = pretrain_source(cfg, data_dir, runs, progress)
    if cached and source_dir is not None:
        meta = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
        source_seconds = float(meta.get("train_seconds") or 0.0)

    fine_start = time.perf_counter()
    set_seed(recipe.seed)
    bundle = TaggerBundle.create(bundle_config(cfg), data.heads, source, default=recipe.default)
    start_label_rows(bundle, data, cfg)
    del source
    best_epoch, history = fit_joint(
        bundle, data.train, data.early_dev, data.source_head, cfg, progress
    )
    fine_seconds = time.perf_counter() - fine_start
    result = BuildResult(
        path=str(out),
        skipped=False,
        recipe=key,
        heads=score_heads(bundle, data, data_dir),
        best_epoch=best_epoch,
        history=history,
        source_checkpoint=str(source_dir) if source_dir else None,
        source_cached=cached,
        source_seconds=source_seconds,
        fine_tune_seconds=fine_seconds,
        build_seconds=time.perf_counter() - start,
    )
    save_build(bundle, result, cfg, out, prov)
    return result


def start_label_rows(bundle: TaggerBundle, data: JointData, cfg: CdlmConfig) -> None:
    """Label semantics on every new head (the source head keeps its trained rows): each
    domain's label descriptions where its label file has them, its type names otherwise, as
    the multi-source recipe starts an auxiliary head."""
    from cdlm.experiments.multisource import head_descriptions

    for name, head in data.heads.items():
        if name == data.source_head:
            continue
        descriptions = head_descriptions(cfg, head.data)
        if descriptions is not None:
            bundle.tagger(name).init_label_rows(descriptions, cfg.tagger.label_init_scale)


def score_heads(
    bundle: TaggerBundle, data: JointData, data_dir: Path | str | None
) -> list[HeadScores]:
    """Every head on its full dev split and, where there is one, its test split."""
    scores = []
    for name, head in data.heads.items():
        view = bundle.tagger(name)
        dev_scores = _score(view, data.dev[name])
        test_split = split_or_none(head.data, "test", data_dir)
        test_scores = _score(view, test_split) if test_split is not None else None
        scores.append(HeadScores(domain=name, data=head.data, dev=dev_scores, test=test_scores))
    return scores


def save_build(
    bundle: TaggerBundle, result: BuildResult, cfg: CdlmConfig, out: Path, prov: dict[str, Any]
) -> None:
    """The model, its scores and its recipe into ``out``, through a fresh temporary folder
    beside it (never a fixed name that could be the user's) moved into place at the end."""
    key = result.recipe
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.mkdir()  # (the umask's permissions, as the model folder will have)
    try:
        bundle.save(tmp, extra={"recipe": key})
        record = {**result.model_dump(mode="json"), "provenance": prov}
        write_json(tmp / SCORES_FILE, record)
        write_json(tmp / RECIPE_FILE, {"recipe": key, "config": cfg.saved_dump()})
        install_model(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when installed


def check_replaceable(out: Path) -> None:
    """``out`` may be replaced by a build only when it is missing, an empty folder or a cdlm
    model folder (:data:`MODEL_FILES`): ``-o`` naming a folder of the user's files must never
    delete them. A one-line error otherwise, before anything is removed."""
    if not out.exists() and not out.is_symlink():
        return
    is_folder = out.is_dir() and not out.is_symlink()
    if is_folder and (not any(out.iterdir()) or all((out / f).is_file() for f in MODEL_FILES)):
        return
    raise ConfigError(
        f"{out}: not a cdlm model folder (no {' and '.join(MODEL_FILES)}) nor empty; refusing "
        "to replace it -- choose another --output folder"
    )


def install_model(tmp: Path, out: Path) -> None:
    """Move the finished model folder ``tmp`` to ``out``, replacing only what
    :func:`check_replaceable` allows."""
    check_replaceable(out)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)


def split_or_none(domain: str, split: str, data_dir: Path | str | None) -> list[Sentence] | None:
    from cdlm.data.registry import domain_dir, load_split

    if not (domain_dir(domain, data_dir) / f"{split}.txt").is_file():
        return None
    return load_split(domain, split, data_dir)


def _score(model, sentences: list[Sentence]) -> SpanScores:
    pred = model.predict_tags([s.tokens for s in sentences])
    return span_scores([s.tags for s in sentences], pred)


def epoch_steps(
    bundle: TaggerBundle,
    train: dict[str, list[Sentence]],
    source_head: str,
    source_order: list[int],
    cursor: int,
    cfg: CdlmConfig,
    rng: random.Random,
) -> tuple[list[Step], int]:
    """One epoch's (head view, batch) steps, shuffled, and where the source cursor stops."""
    size = cfg.train.batch_size
    steps = [
        (bundle.tagger(name), chunk)
        for name, sentences in train.items()
        if name != source_head
        for chunk in batches(sentences, size, rng)
    ]
    n_source = round(cfg.default_model.source_mix * len(steps)) if len(train) > 1 else None
    source = train[source_head]
    if n_source is None:  # the source is the only domain: a plain epoch
        n_source = (len(source) + size - 1) // size
    picked = []
    for _ in range(n_source * size):
        picked.append(source[source_order[cursor % len(source_order)]])
        cursor += 1
    view = bundle.tagger(source_head)
    steps += [(view, picked[k : k + size]) for k in range(0, len(picked), size)]
    rng.shuffle(steps)
    return steps, cursor


def fit_joint(
    bundle: TaggerBundle,
    train: dict[str, list[Sentence]],
    dev: dict[str, list[Sentence]],
    source_head: str,
    cfg: CdlmConfig,
    progress: bool = True,
) -> tuple[int, list[JointEpochLog]]:
    """Joint fine-tuning with early stopping on the mean dev F1 of the heads; leaves the best
    epoch's weights in ``bundle``. Returns (best epoch, history)."""
    recipe = cfg.default_model
    rng = random.Random(recipe.seed)
    source_order = list(range(len(train[source_head])))
    rng.shuffle(source_order)
    # The first epoch is planned up front: its length sizes the learning-rate schedule (the
    # target recipe's: warm-up, decay over `train.decay_epochs` epochs, then flat).
    first, cursor = epoch_steps(bundle, train, source_head, source_order, 0, cfg, rng)

    def plan(epoch: int) -> list[Step]:
        nonlocal cursor
        if epoch == 1:
            return first
        steps, cursor = epoch_steps(bundle, train, source_head, source_order, cursor, cfg, rng)
        return steps

    history: list[JointEpochLog] = []

    def evaluate(epoch: EpochRun) -> tuple[float, str]:
        f1 = {name: _score(bundle.tagger(name), sents).f1 for name, sents in dev.items()}
        mean = sum(f1.values()) / len(f1)
        history.append(
            JointEpochLog(
                epoch=epoch.epoch,
                train_loss=epoch.loss,
                dev_f1=f1,
                mean_dev_f1=mean,
                seconds=epoch.seconds,
            )
        )
        per_head = " ".join(f"{n} {100 * v:.1f}" for n, v in f1.items())
        return mean, f"loss {epoch.loss:.4f} mean dev F1 {100 * mean:.2f}; {per_head}"

    stopping = Stopping(recipe.epochs, recipe.patience)
    best_epoch, _ = fit_epochs(
        bundle, plan, len(first), cfg, stopping, evaluate, progress=progress, label="epoch"
    )
    bundle.eval()
    return best_epoch, history


def results_markdown(result: BuildResult, cfg: CdlmConfig, provenance: dict[str, Any]) -> str:
    """The per-domain table of the default model, then each head's per-type table."""
    rows = [
        "| domain | data | dev F1 | test F1 | test P | test R | test gold spans |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for h in result.heads:
        t = h.test
        rows.append(
            f"| {h.domain} | {h.data} | {100 * h.dev.f1:.2f} | "
            + (
                f"{100 * t.f1:.2f} | {100 * t.precision:.2f} | {100 * t.recall:.2f} | {t.support} |"
                if t is not None
                else "- | - | - | - |"
            )
        )
    src = (
        f"cached source model, pre-trained in {result.source_seconds:.0f} s when it was built"
        if result.source_cached
        else f"source pre-training {result.source_seconds:.0f} s"
    )
    md = [
        "# The default model",
        "",
        f"One encoder (`{cfg.encoder.name or 'embedded all-MiniLM-L6-v2'}`), a head per domain; "
        f"strict IOB2 span micro-F1. Best epoch {result.best_epoch} of {len(result.history)} "
        f"(mean dev F1, early stopping).",
        "",
        *rows,
        "",
        f"- build wall time: {result.build_seconds:.0f} s ({src}; joint fine-tuning "
        f"{result.fine_tune_seconds:.0f} s; the rest is loading and scoring)",
        f"- recipe: `{result.recipe}`, seed {cfg.default_model.seed}",
        f"- command: `{provenance.get('command', '')}`",
        f"- commit: `{provenance.get('commit', '')}`",
        f"- time: {provenance.get('time', '')}, {provenance.get('machine', '')}",
        "",
    ]
    for h in result.heads:
        if h.test is not None:
            md += [f"## {h.domain} test", "", scores_markdown(h.test), ""]
    return "\n".join(md)


def provenance(cfg: CdlmConfig) -> dict[str, Any]:
    from cdlm.provenance import stamp

    return stamp(seed=cfg.default_model.seed, config=cfg.model_dump(mode="json"))


def write_build_results(
    result: BuildResult, cfg: CdlmConfig, path: Path, prov: dict[str, Any]
) -> Path:
    """``evals/results/default_model.{json,md}``: the scores with command, config, seed, commit
    (``prov``, stamped when the build started)."""
    record = {**result.model_dump(mode="json"), "provenance": prov}
    return write_results(path, record, results_markdown(result, cfg, prov))
