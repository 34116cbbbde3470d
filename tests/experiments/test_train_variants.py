"""Tiny real training runs of every variant (issue 18 item 2, issue 14 "what it must show" 4):
a few CrossNER sentences, one target epoch, the real encoder, source model and label graphs.
Each test asserts what its part adds: parameters in the checkpoint, its loss term, graph reuse
by fingerprint, alpha recorded, the FactMix record, identical predictions after reloading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cdlm.experiments.train
import cdlm.graphs
from cdlm.config import VARIANTS, load_config
from cdlm.errors import ConfigError
from cdlm.experiments.train import train
from cdlm.model.tagger import Tagger


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One runs folder per module: the tiny source model is pre-trained once and shared."""
    return tmp_path_factory.mktemp("variant_runs")


def _config(variant: str, graphs_dir: Path, **extra):
    return load_config(
        None,
        {
            **VARIANTS[variant],
            "train.variant": variant,
            "train.target": "politics",
            "train.threads": 1,
            "train.source_epochs": 1,
            "train.target_epochs": 1,
            "train.batch_size": 8,
            "fusion.graphs_dir": str(graphs_dir),  # not the repository's committed graphs
            "fusion.q_max_sentences": None,
            **extra,
        },
    )


@pytest.fixture
def trained_models(monkeypatch) -> list:
    """The in-memory models ``train`` fine-tuned (a spy on ``cdlm.experiments.train.fit``; the
    real fit runs), to compare with what a reload of the checkpoint predicts."""
    models = []
    real_fit = cdlm.experiments.train.fit

    def spy(model, *args, **kwargs):
        models.append(model)
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(cdlm.experiments.train, "fit", spy)
    return models


def _assert_reload_identical(model, checkpoint: Path, data_dir: Path) -> None:
    from cdlm.data.registry import load_split

    tokens = [s.tokens for s in load_split("politics", "test", data_dir)]
    reloaded = Tagger.load(checkpoint)
    before = model.eval().predict_proba(tokens)
    after = reloaded.predict_proba(tokens)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert reloaded.config.causal.alpha == model.config.causal.alpha


def _weights(checkpoint: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as fh:
        return list(fh.keys())


def test_gcn_graphs_cached_by_fingerprint_reused_and_stale_rejected(
    small_crossner, runs, tmp_path, monkeypatch, trained_models
):
    builds = []
    real_build = cdlm.graphs.graphs_from_tagger

    def counting(*args, **kwargs):
        builds.append(1)
        return real_build(*args, **kwargs)

    monkeypatch.setattr(cdlm.graphs, "graphs_from_tagger", counting)
    config = _config("gcn", tmp_path / "graphs")
    first = train(config, tmp_path / "a", data_dir=small_crossner, runs=runs, progress=False)
    source = Path(first.source_checkpoint)
    cached = source / "graphs" / "conll2003__politics.json"
    graphs = cdlm.graphs.LabelGraphs.load(cached)
    assert builds == [1]
    assert graphs.params["checkpoint_sha256"] == cdlm.graphs.checkpoint_fingerprint(source)
    assert graphs.source_edges and graphs.target_edges  # the tau/theta rules give structure
    # The fusion's parameters and its two loss terms.
    assert any(k.startswith("fusion.gcn1.") for k in _weights(tmp_path / "a"))
    terms = first.history[0].losses
    assert terms["gm"] > 0 and terms["aux"] > 0
    _assert_reload_identical(trained_models[0], tmp_path / "a", small_crossner)

    # Same source model: the cached graphs are reused, nothing is rebuilt.
    train(config, tmp_path / "b", data_dir=small_crossner, runs=runs, progress=False)
    assert builds == [1]
    # A file that names another source checkpoint is stale: rebuilt and rewritten.
    data = json.loads(cached.read_text(encoding="utf-8"))
    data["params"]["checkpoint_sha256"] = "0" * 16
    cached.write_text(json.dumps(data), encoding="utf-8")
    train(config, tmp_path / "c", data_dir=small_crossner, runs=runs, progress=False)
    assert builds == [1, 1]
    fresh = cdlm.graphs.LabelGraphs.load(cached)
    assert fresh.params["checkpoint_sha256"] == graphs.params["checkpoint_sha256"]


def test_gcn_without_graph_matching_has_no_gm_term(small_crossner, runs, tmp_path):
    result = train(
        _config("gcn-nogm", tmp_path / "graphs"),
        tmp_path / "a",
        data_dir=small_crossner,
        runs=runs,
        progress=False,
    )
    terms = result.history[0].losses
    assert "gm" not in terms and terms["aux"] > 0


def test_fusion_without_a_source_model_is_a_config_error(small_crossner, tmp_path):
    config = _config("gcn", tmp_path / "graphs", **{"train.source_epochs": 0})
    with pytest.raises(ConfigError, match="fusion.enabled: label graphs need a source model"):
        train(config, tmp_path / "a", data_dir=small_crossner, runs=tmp_path, progress=False)


@pytest.mark.parametrize("variant", ["causal", "full"])
def test_causal_views_train_and_alpha_is_recorded(
    variant, small_crossner, runs, tmp_path, trained_models
):
    config = _config(variant, tmp_path / "graphs", **{"causal.alpha_grid": [0.5, 0.0]})
    result = train(config, tmp_path / "a", data_dir=small_crossner, runs=runs, progress=False)
    terms = result.history[0].losses
    assert terms["ctx"] > 0 and terms["cons"] > 0
    if variant == "full":
        assert terms["gm"] > 0 and any(k.startswith("fusion.") for k in _weights(tmp_path / "a"))
    # Every alpha of the grid was scored on dev; the chosen one is saved with the checkpoint.
    sweep = {p["alpha"]: p["dev_f1"] for p in result.alpha_sweep}
    assert sorted(sweep) == [0.0, 0.5]
    saved = Tagger.read_meta(tmp_path / "a")["config"]["causal"]["alpha"]
    best = max(sweep.values())
    assert saved == min(a for a, f in sweep.items() if f == best)
    assert result.dev.f1 == sweep[saved]
    scores = json.loads((tmp_path / "a" / "scores.json").read_text(encoding="utf-8"))
    assert scores["alpha_sweep"] == result.alpha_sweep
    _assert_reload_identical(trained_models[0], tmp_path / "a", small_crossner)


def test_factmix_steps_matched_record_is_consistent(small_crossner, runs, tmp_path):
    """Entity-level semi-facts only (context ratio 0: no LLM), two grid points, no filter
    (a one-epoch tagger rejects every sentence; tests/augment cover the filter), every epoch
    as long as the plain variant's."""
    config = _config(
        "baseline+factmix",
        tmp_path / "graphs",
        **{
            "augment.grid": [(1, 0), (2, 0)],
            "augment.steps_matched": True,
            "augment.filter": False,
        },
    )
    result = train(config, tmp_path / "a", data_dir=small_crossner, runs=runs, progress=False)
    record = result.augment
    stats = record["stats"]
    points = record["grid"]["points"]
    assert record["method"] == "factmix" and record["filter_checkpoint"] is None
    assert record["filter_tagger_dev_f1"] is None and stats["filter"] is None
    assert [(p["entity_ratio"], p["context_ratio"]) for p in points] == [(1, 0), (2, 0)]
    assert stats["originals"] == 32 and stats["context"]["generated"] == 0
    assert 0 < stats["entity"]["kept"] == stats["entity"]["generated"]
    # The largest ratio takes every kept semi-fact, the smaller one a subset.
    assert 32 < points[0]["sentences"] <= points[1]["sentences"] == 32 + stats["entity"]["kept"]
    chosen = record["grid"]["chosen"]
    assert chosen in points and chosen["dev_f1"] == max(p["dev_f1"] for p in points)
    assert result.dev.f1 == chosen["dev_f1"]
    # Steps-matched: one epoch = the update steps of a pass over the 32 originals (batch 8).
    assert [e.steps for e in result.history] == [4]
