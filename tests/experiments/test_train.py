"""A short real training run on a few CrossNER sentences: source pre-training (cached), target
fine-tuning, checkpoint + scores, determinism for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_provenance import assert_commit_stamp

from cdlm.config import load_config
from cdlm.errors import ConfigError
from cdlm.experiments.train import train
from cdlm.model.tagger import Tagger


def _config(**extra):
    return load_config(
        None,
        {
            "train.target": "politics",
            "train.max_train_sentences": 16,
            "train.threads": 1,
            "train.source_epochs": 1,
            "train.target_epochs": 3,
            "train.batch_size": 8,
            "train.patience": 3,
            **extra,
        },
    )


def test_source_then_target_training(small_crossner: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = train(_config(), tmp_path / "a", data_dir=small_crossner, runs=runs, progress=False)

    # the source model was trained and cached under runs/source/
    assert not first.source_cached and first.source_seconds > 0
    source_dir = Path(first.source_checkpoint)
    assert source_dir.parent == runs / "source" and (source_dir / "model.safetensors").is_file()
    assert Tagger.read_meta(source_dir)["labels"][1:3] == ["B-location", "I-location"]

    # the target run learnt something and kept its best epoch
    losses = [e.train_loss for e in first.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert first.best_epoch == max(first.history, key=lambda e: e.dev_f1).epoch
    out = tmp_path / "a"
    for name in ("model.safetensors", "config.json", "scores.json", "encoder/tokenizer.json"):
        assert (out / name).is_file(), name
    scores = json.loads((out / "scores.json").read_text())
    assert scores["dev"]["f1"] == first.dev.f1 and scores["test"]["sentences"] > 0
    assert scores["provenance"]["config"]["train"]["seed"] == 1
    assert_commit_stamp(scores["provenance"])
    assert Tagger.read_meta(out)["labels"] == Tagger.load(out).labels

    # same config again: the source comes from the cache, and training is deterministic
    second = train(_config(), tmp_path / "b", data_dir=small_crossner, runs=runs, progress=False)
    assert second.source_cached and second.source_checkpoint == first.source_checkpoint
    assert [e.train_loss for e in second.history] == losses
    assert second.dev == first.dev


def test_missing_target_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.target"):
        train(load_config(None, {}), tmp_path)


@pytest.mark.parametrize(
    ("args", "method", "fusion", "variant"),
    [
        (["--variant", "baseline+factmix"], "factmix", False, "baseline+factmix"),
        (["--variant", "full+factmix"], "factmix", True, "full+factmix"),
        (["--variant", "gcn", "--augment", "factmix"], "factmix", True, "gcn+factmix"),
        (["--variant", "gcn"], "none", True, "gcn"),
    ],
)
def test_cli_variant_is_not_undone_by_unset_flags(monkeypatch, args, method, fusion, variant):
    """`cdlm train --variant X` hands training X's settings; a flag left unset (here
    ``--augment``) must not reset what the variant switched on."""
    import typer
    from typer.testing import CliRunner

    import cdlm.experiments.train
    from cdlm.cli import run as run_cli

    seen = []

    def capture(cfg, out, **_):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(cdlm.experiments.train, "train", capture)
    app = typer.Typer()
    run_cli.register(app)
    res = CliRunner().invoke(app, ["train", "--target", "politics", *args])
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert cfg.augment.method == method
    assert cfg.fusion.enabled is fusion
    assert cfg.train.variant == variant


def test_user_folder_without_test_split(small_crossner: Path, tmp_path: Path) -> None:
    """`cdlm train --target DIR` on a folder with train.txt and dev.txt only: the model is saved
    and loads, there is no test score, and the output says so."""
    import shutil

    import typer
    from typer.testing import CliRunner

    from cdlm.cli import run as run_cli
    from cdlm.inference.model import CDLM

    folder = tmp_path / "mydata"
    folder.mkdir()
    for split in ("train", "dev"):
        shutil.copy(small_crossner / "politics" / f"{split}.txt", folder / f"{split}.txt")
    app = typer.Typer()
    run_cli.register(app)
    out = tmp_path / "model"
    args = ["train", "--target", str(folder), "--source-epochs", "0", "--epochs", "1"]
    args += ["--max-train-sentences", "8", "--threads", "1", "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"no test score: {folder / 'test.txt'} not found" in res.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["test"] is None and scores["dev"]["sentences"] > 0
    assert CDLM.from_pretrained(out).domains == ["mydata"]


def test_label_init_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``tagger.label_init``: "auto" (the default) takes the domain's label file where it has
    descriptions, else the type names, and says so in one line; "descriptions" then is an
    error."""
    from cdlm.experiments.train import label_descriptions

    def mode(label_init: str, target: str = "politics"):
        cfg = load_config(None, {"train.target": target, "tagger.label_init": label_init})
        return label_descriptions(cfg)

    assert load_config().tagger.label_init == "auto"
    politics = mode("auto")
    assert politics == mode("descriptions") and "politician" in politics
    assert mode("random") is None and mode("names") == {}
    capsys.readouterr()
    mine = tmp_path / "mydata"
    assert mode("auto", str(mine)) == {}  # the type names alone
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "labels/mydata.toml" in err and "the type names" in err
    with pytest.raises(ConfigError, match=r"labels/mydata.toml has no \[types\] descriptions"):
        mode("descriptions", str(mine))


def test_every_named_variant_pins_its_head_init() -> None:
    """A named variant means the same model whatever the defaults: the suite's recorded runs
    (and their hashes) survive a change of ``tagger.label_init``'s default."""
    from cdlm.config import VARIANTS

    for name, overrides in VARIANTS.items():
        assert overrides.get("tagger.label_init") in {"random", "descriptions", "names"}, name


def test_default_training_starts_from_the_label_descriptions(
    small_crossner: Path, tmp_path: Path
) -> None:
    """The default recipe and the plain tagger differ only in the head's first rows: same seed,
    different first-epoch loss; "random" is the plain run exactly."""
    runs = tmp_path / "runs"

    def first_loss(label_init: str | None, name: str) -> float:
        extra = {"train.source_epochs": 0, "train.target_epochs": 1}
        if label_init is not None:
            extra["tagger.label_init"] = label_init
        result = train(
            _config(**extra), tmp_path / name, data_dir=small_crossner, runs=runs, progress=False
        )
        return result.history[0].train_loss

    plain = first_loss("random", "plain")
    assert first_loss(None, "default") != plain
    assert first_loss("random", "plain2") == plain


SOURCE_TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TARGET_TAGS = ["O", "B-country", "I-country", "B-politician", "I-politician"]


def _graphs():
    """Label graphs between two small tag sets, from made-up source-tagger outputs."""
    import numpy as np

    from cdlm.graphs import build_graphs

    rng = np.random.default_rng(0)
    src = [["O", "B-LOC", "I-LOC", "O", "B-PER", "I-PER"]] * 4
    tgt = [["O", "B-country", "O", "B-politician", "I-politician"]] * 4
    probs = [rng.dirichlet(np.ones(len(SOURCE_TAGS)), len(s)) for s in src + tgt]
    return build_graphs(
        probs[: len(src)],
        src,
        probs[len(src) :],
        tgt,
        source="conll2003",
        target="politics",
        source_tags=SOURCE_TAGS,
        target_tags=TARGET_TAGS,
        tau=1.0,
        theta=0.6,
    )


def test_the_tagger_builds_its_plug_ins_from_what_it_is_given() -> None:
    """``Tagger.from_source`` builds the fusion from the label graphs and the source head rows,
    and hands the causal module its swap names: same seed, same initial weights as a tagger
    whose fusion was attached afterwards (the order training used before it moved)."""
    import copy

    import torch

    from cdlm.config import VARIANTS
    from cdlm.experiments.loop import set_seed
    from cdlm.model.fusion import LabelFusion, build_fusion

    set_seed(0)
    source = Tagger.create(load_config(None, VARIANTS["baseline"]), SOURCE_TAGS)
    # Fusion and both causal parts: each draws initial weights from the seed, in a fixed order.
    full = load_config(None, {**VARIANTS["full"], "causal.implicit": True})
    names = {"politician": [("Angela", "Merkel")]}
    set_seed(1)
    built = Tagger.from_source(full, TARGET_TAGS, source, graphs=_graphs(), swap_names=names)
    assert isinstance(built.fusion, LabelFusion) and built.causal is not None
    assert torch.equal(built.fusion.source_emb, source.head.weight)
    assert built.causal.swap_names == {"politician": (("Angela", "Merkel"),)}
    assert torch.equal(built.casing.embedding.weight, source.casing.embedding.weight)

    set_seed(1)
    enc = copy.deepcopy(source.encoder)
    attached = Tagger(full, TARGET_TAGS, enc, source.tokenizer, source.encoder_name)
    attached.casing.load_state_dict(source.casing.state_dict())
    attached.fusion = build_fusion(full, _graphs(), source.head.weight, TARGET_TAGS)
    mine, theirs = built.state_dict(), attached.state_dict()
    assert list(mine) == list(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)

    baseline = load_config(None, VARIANTS["baseline"])
    plain = Tagger.from_source(baseline, TARGET_TAGS, source, graphs=_graphs(), swap_names=names)
    assert plain.fusion is None and plain.causal is None
    with pytest.raises(ConfigError, match="label graphs need a source model"):
        Tagger.from_source(full, TARGET_TAGS, None, graphs=_graphs())


def test_the_fusion_benchmark_uses_public_functions() -> None:
    """evals/bench_fusion.py builds its taggers the way training does, through public names."""
    import ast

    path = Path(__file__).resolve().parents[2] / "evals" / "bench_fusion.py"
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cdlm")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []
