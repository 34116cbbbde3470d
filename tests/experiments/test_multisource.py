"""Multi-source training (cdlm/experiments/multisource.py) in tiny real runs on the synthetic
corpus: politics as the target beside conll2003 and ``renamed`` (a copy of politics whose
politics-only types are renamed and which has no label file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cdlm.config import CdlmConfig, load_config
from cdlm.data.registry import domain_labels, load_split
from cdlm.errors import ConfigError, DataError
from cdlm.experiments import evaluate
from cdlm.experiments import multisource as ms
from cdlm.experiments.loop import make_optimizer, state_copy, train_step
from cdlm.experiments.train import train
from cdlm.model.tagger import Tagger
from cdlm.runs import config_hash, saved_config, training_view

RENAMED = {"politician": "statesman", "politicalparty": "party", "election": "vote"}


@pytest.fixture(scope="module")
def renamed(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Politics with three types renamed (the other six recur in politics, five in conll2003)."""
    folder = tmp_path_factory.mktemp("aux") / "renamed"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        text = (small_crossner / "politics" / f"{split}.txt").read_text()
        for old, new in RENAMED.items():
            text = text.replace(f"-{old}\n", f"-{new}\n")
        (folder / f"{split}.txt").write_text(text)
    return folder


def _config(**extra) -> CdlmConfig:
    return load_config(
        None,
        {
            "train.target": "politics",
            "train.source_epochs": 0,
            "train.max_train_sentences": 16,
            "train.target_epochs": 2,
            "train.batch_size": 8,
            "train.head_lr": 3e-3,
            "train.threads": 1,
            **extra,
        },
    )


def _bundle(data_dir: Path, auxiliaries: list[str], **extra):
    """The seeded model of a run, before training, with what its planner needs."""
    cfg = ms.multisource_config(_config(**extra), None, auxiliaries)
    name, data, auxes = ms.read_data(cfg, data_dir)
    bundle, tied = ms.build_bundle(cfg, (name, data), auxes, None)
    return cfg, name, data, auxes, bundle, tied


def _changed(before: dict[str, torch.Tensor], bundle) -> set[str]:
    after = bundle.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def test_each_domain_trains_through_its_own_head(small_crossner: Path, renamed: Path) -> None:
    """Every step is a batch of one domain through that domain's head; an auxiliary step moves
    its head and the encoder, never the target's head; a split larger than its share is
    walked through across epochs."""
    aux = ["conll2003", str(renamed)]
    cfg, name, data, auxes, bundle, _ = _bundle(
        small_crossner, aux, **{"multisource.max_sentences": 8}
    )
    shares = ms.epoch_shares({a.head: len(a.train) for a in auxes}, 8, "proportional", 2.0)
    plan, counts = ms.epoch_planner(bundle, (name, data.train), auxes, shares, cfg)
    assert counts == {"politics": 2, "conll2003": 1, "renamed": 1}
    own = {name: data.train} | {a.head: a.train for a in auxes}
    seen: dict[str, list[int]] = {head: [] for head in own}
    for epoch in (1, 2):
        steps = plan(epoch)
        assert len(steps) == sum(counts.values())
        for view, batch in steps:
            head = next(h for h in own if bundle.tagger(h) is view)
            assert {id(s) for s in batch} <= {id(s) for s in own[head]}, head
            seen[head] += [id(s) for s in batch]
    # conll2003's 16 sentences, 8 an epoch: two epochs see each of them once
    assert sorted(seen["conll2003"]) == sorted(id(s) for s in own["conll2003"])

    steps = plan(3)
    optim = make_optimizer(bundle, cfg, len(steps))
    view, batch = next(s for s in steps if s[0] is bundle.tagger("conll2003"))
    before = state_copy(bundle)
    train_step(view, batch, bundle, cfg, optim)
    changed = _changed(before, bundle)
    assert {"heads.conll2003.weight", "heads.conll2003.bias"} <= changed
    assert any(k.startswith("encoder.") for k in changed)
    assert not {k for k in changed if k.startswith(("heads.politics.", "heads.renamed."))}


def test_every_head_starts_from_its_label_semantics(small_crossner: Path, renamed: Path) -> None:
    """Each head's B-/I- rows start from the encoded label descriptions where its domain has a
    label file (politics, conll2003), from the type names where not (``renamed``)."""
    aux = ["conll2003", str(renamed)]
    auto = _bundle(small_crossner, aux)[4]
    names = _bundle(small_crossner, aux, **{"tagger.label_init": "names"})[4]
    plain = _bundle(small_crossner, aux, **{"tagger.label_init": "random"})[4]
    for head in ("politics", "conll2003", "renamed"):
        labels, rows = auto.specs[head].labels, auto.heads[head].weight
        b, i = labels.index("B-person"), labels.index("I-person")
        assert torch.equal(rows[b], rows[i]), head  # one encoded text per type
        random_rows = plain.heads[head].weight
        assert not torch.equal(random_rows[b], random_rows[i]), head
        same_as_names = torch.equal(rows, names.heads[head].weight)
        assert same_as_names is (head == "renamed"), head


def test_tied_types_share_their_rows(small_crossner: Path, renamed: Path, tmp_path: Path) -> None:
    """``multisource.tie_types``: a type several label sets share has one B- and one I- row
    for all heads, so an auxiliary's step moves the target's tied rows with its own, and the
    other rows stay apart; a saved tied model loads with the rows equal."""
    from cdlm.model.bundle import TaggerBundle

    aux = ["conll2003", str(renamed)]
    *_, untied, none = _bundle(small_crossner, aux)
    cfg, name, data, auxes, bundle, tied = _bundle(
        small_crossner, aux, **{"multisource.tie_types": True}
    )
    assert none == [] and tied == ["country", "event", "location", "misc", "organisation", "person"]

    def row(b, head: str, tag: str) -> torch.Tensor:
        return b.heads[head].weight[b.specs[head].labels.index(tag)].detach().clone()

    assert not torch.equal(
        row(untied, "politics", "B-person"), row(untied, "conll2003", "B-person")
    )
    assert torch.equal(row(bundle, "politics", "B-person"), row(bundle, "conll2003", "B-person"))
    steps = ms.epoch_planner(bundle, (name, data.train), auxes, {"conll2003": 8, "renamed": 8}, cfg)
    view, batch = next(s for s in steps[0](1) if s[0] is bundle.tagger("conll2003"))
    person, politician, country = (
        row(bundle, "politics", tag) for tag in ("B-person", "B-politician", "B-country")
    )
    train_step(view, batch, bundle, cfg, make_optimizer(bundle, cfg, 4))
    for tag in ("B-person", "I-location", "B-misc"):
        assert torch.equal(row(bundle, "politics", tag), row(bundle, "conll2003", tag)), tag
        assert torch.equal(row(bundle, "politics", tag), row(bundle, "renamed", tag)), tag
    assert not torch.equal(row(bundle, "politics", "B-person"), person)  # moved by conll2003
    assert torch.equal(row(bundle, "politics", "B-politician"), politician)  # its own row
    assert torch.equal(row(bundle, "politics", "B-country"), country)  # conll2003 has none
    assert not torch.equal(row(bundle, "politics", "O"), row(bundle, "conll2003", "O"))
    exported = bundle.export("politics")
    assert torch.equal(exported.head.weight, bundle.heads["politics"].weight)
    loaded = TaggerBundle.load(bundle.save(tmp_path / "bundle"))
    assert torch.equal(row(loaded, "renamed", "I-country"), row(loaded, "politics", "I-country"))


def test_early_stopping_reads_the_target_dev_alone(
    small_crossner: Path, renamed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every dev score of the run is the target head on the target's dev split; the epoch kept
    (and saved) is the best of those scores, and patience counts on them."""
    dev = load_split("politics", "dev", small_crossner)
    script = iter([0.2, 0.6, 0.3, 0.4, 0.9, 0.9])
    calls, probs = [], []
    real = evaluate.score_model

    def spy(model, sentences):
        calls.append((list(model.labels), list(sentences)))
        probs.append(model.predict_proba([s.tokens for s in sentences]))
        scores, seconds, pred = real(model, sentences)
        return scores.model_copy(update={"f1": next(script)}), seconds, pred

    monkeypatch.setattr(evaluate, "score_model", spy)
    cfg = _config(**{"train.target_epochs": 6, "train.patience": 2})
    out = tmp_path / "model"
    result = ms.train_multisource(
        cfg, out, auxiliaries=["conll2003", str(renamed)], data_dir=small_crossner,
        runs=tmp_path / "runs", progress=False, evaluate_test=False,
    )  # fmt: skip
    assert calls == [(domain_labels("politics", small_crossner), dev)] * 4
    assert [e.dev_f1 for e in result.history] == [0.2, 0.6, 0.3, 0.4]
    assert result.best_epoch == 2 and result.dev.f1 == 0.6
    saved = [torch.from_numpy(p) for p in Tagger.load(out).predict_proba([s.tokens for s in dev])]
    at = [[torch.from_numpy(p) for p in epoch] for epoch in probs]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(saved, at[1], strict=True))
    assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(saved, at[3], strict=True))


def test_no_auxiliaries_is_the_single_target_run(small_crossner: Path, tmp_path: Path) -> None:
    """``auxiliaries=[]`` is ``cdlm train``: same weights for the seed, same run hash; the
    multisource section hashes as absent until it has auxiliaries."""
    from safetensors.torch import load_file

    runs = tmp_path / "runs"
    train(_config(), tmp_path / "single", small_crossner, runs, progress=False)
    result = ms.train_multisource(
        _config(), tmp_path / "multi", auxiliaries=[], data_dir=small_crossner, runs=runs,
        progress=False,
    )  # fmt: skip
    assert result.auxiliaries == [] and result.total_seconds > 0
    one = load_file(str(tmp_path / "single" / "model.safetensors"))
    two = load_file(str(tmp_path / "multi" / "model.safetensors"))
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert saved_config(tmp_path / "multi") == saved_config(tmp_path / "single")
    assert "multisource" not in training_view(_config())
    with_aux = _config(**{"multisource.auxiliaries": ["conll2003"]})
    assert "multisource" in training_view(with_aux)
    assert config_hash(with_aux) != config_hash(_config())


def test_the_saved_target_model_predicts(
    small_crossner: Path, renamed: Path, tmp_path: Path
) -> None:
    """A tied, temperature-mixed run saves the target's tagger: it loads with
    ``CDLM.from_pretrained`` and predicts with the target's labels; the scores file has the
    wall time of every epoch and of the whole call, and the auxiliaries' shares."""
    from cdlm.inference.model import CDLM

    cfg = _config(**{"multisource.tie_types": True, "multisource.mixing": "temperature"})
    out = tmp_path / "model"
    result = ms.train_multisource(
        cfg, out, auxiliaries=["conll2003", str(renamed)], data_dir=small_crossner,
        runs=tmp_path / "runs", progress=False,
    )  # fmt: skip
    model = CDLM.from_pretrained(out)
    assert model.domains == ["politics"] and model.default_domain == "politics"
    assert model.tagger().labels == domain_labels("politics", small_crossner)
    entities = model.predict("Angela Merkel of the Green Party won the 2019 general election .")
    types = set(model.labels())
    assert all(e["label"] in types for e in entities)
    scores = json.loads((out / "scores.json").read_text())
    assert scores["test"]["sentences"] > 0 and scores["tied_types"] == result.tied_types
    assert [a["head"] for a in scores["auxiliaries"]] == ["conll2003", "renamed"]
    assert all(e["seconds"] > 0 for e in scores["history"])
    assert scores["total_seconds"] >= sum(e["seconds"] for e in scores["history"])
    assert result.steps_per_epoch == {"politics": 2, "conll2003": 2, "renamed": 2}
    meta = Tagger.read_meta(out)
    assert meta["auxiliaries"] == ["conll2003", str(renamed)]
    assert meta["config"]["multisource"]["auxiliaries"] == ["conll2003", str(renamed)]


def _copy(src: Path, dest: Path, splits: tuple[str, ...]) -> Path:
    dest.mkdir()
    for split in splits:
        shutil.copy(src / f"{split}.txt", dest / f"{split}.txt")
    return dest


def test_bad_input_is_one_line_before_any_training(
    small_crossner: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown name, a folder without a dev split, a malformed file, the target again, a
    module a bundle cannot hold: one line naming the domain or FILE:LINE, and no source
    pre-training nor epoch has run."""
    ran: list[str] = []
    monkeypatch.setattr(ms, "pretrain_source", lambda *a, **k: ran.append("source"))
    monkeypatch.setattr(ms, "fit_epochs", lambda *a, **k: ran.append("epoch"))
    politics = small_crossner / "politics"
    no_dev = _copy(politics, tmp_path / "nodev", ("train", "test"))
    bad = _copy(politics, tmp_path / "bad", ("train", "dev", "test"))
    lines = (bad / "dev.txt").read_text().splitlines()
    lines[4] = lines[4].split("\t")[0] + "\tX-person"
    (bad / "dev.txt").write_text("\n".join(lines) + "\n")
    cases = [
        (["conll2003", "nope"], {}, DataError, r"^auxiliary 'nope': unknown domain 'nope'"),
        ([str(no_dev)], {}, DataError, rf"^auxiliary '{no_dev}': {no_dev}: no dev split"),
        ([str(bad)], {}, DataError, rf"^auxiliary '{bad}': {bad / 'dev.txt'}:5: unknown tag"),
        (["conll2003", "politics"], {}, ConfigError, r"'politics' is the target"),
        (["conll2003", "conll2003"], {}, ConfigError, r"'conll2003' is listed twice"),
        (["conll2003"], {"fusion.enabled": True}, ConfigError, r"switch off fusion.enabled"),
    ]
    for auxiliaries, extra, error, message in cases:
        with pytest.raises(error, match=message) as info:
            ms.train_multisource(
                _config(**extra), tmp_path / "out", auxiliaries=auxiliaries,
                data_dir=small_crossner, runs=tmp_path / "runs", progress=False,
            )  # fmt: skip
        assert "\n" not in str(info.value), str(info.value)
    assert ran == [] and not (tmp_path / "out").exists()


def test_epoch_shares_follow_the_mixing_rule() -> None:
    """Capped sizes; "equal" and "temperature" share out the same total; none above the cap."""
    sizes = {"big": 14000, "mid": 150, "small": 50}
    assert ms.epoch_shares(sizes, 200, "proportional", 2.0) == {"big": 200, "mid": 150, "small": 50}
    assert ms.epoch_shares(sizes, 200, "equal", 2.0) == {"big": 133, "mid": 133, "small": 133}
    hot = ms.epoch_shares(sizes, 200, "temperature", 2.0)
    assert hot["big"] > hot["mid"] > hot["small"] > 50 and max(hot.values()) <= 200
    assert abs(sum(hot.values()) - 400) <= 1
    assert ms.epoch_shares(sizes, 200, "temperature", 1.0) == {"big": 200, "mid": 150, "small": 50}
    assert ms.epoch_shares(sizes, None, "proportional", 2.0) == sizes


def test_all_names_every_known_labelled_domain_but_the_target(tmp_path: Path) -> None:
    """``--with all`` is CoNLL-2003 and the CrossNER domains less the target; a run saves (and
    a suite hashes) the expanded list, so the two agree on the run."""
    from cdlm.experiments.suite import SuiteSpec, run_config

    others = ["conll2003", "science", "music", "literature", "ai"]
    assert ms.expand_auxiliaries("politics", ["all"]) == others
    assert ms.expand_auxiliaries("politics", ["ai", "all"]) == ["ai", *others[:-1]]
    folder = str(tmp_path / "mine")
    assert ms.expand_auxiliaries("politics", ["all", folder, "ai"]) == [*others[:-1], folder, "ai"]
    assert ms.expand_auxiliaries("politics", ["ai", "ai"]) == ["ai", "ai"]  # head_names refuses
    cfg = ms.multisource_config(_config(), "politics", ["all"])
    assert cfg.multisource.auxiliaries == others
    spec = SuiteSpec(
        name="s",
        variants=["ms"],
        domains=["politics"],
        define={"ms": {"base": "labels", "multisource.auxiliaries": ["all"]}},
    )
    assert run_config(spec, "ms", "politics", 1).multisource.auxiliaries == others
