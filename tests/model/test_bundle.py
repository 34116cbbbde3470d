"""TaggerBundle: one encoder shared by a head per domain; views, saving, loading, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cdlm.config import load_config
from cdlm.errors import ConfigError, ModelNotFoundError
from cdlm.model.bundle import Head, TaggerBundle
from cdlm.model.tagger import Tagger

WORDS = [["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", "."]]


def test_bundle_starts_from_the_source_tagger(tiny_tagger: Tagger) -> None:
    """A head with the source's labels starts as the source head; the encoder is the source's."""
    heads = {
        "politics": Head(labels=tiny_tagger.labels, data="politics"),
        "other": Head(labels=["O", "B-x", "I-x"], data="elsewhere"),
    }
    bundle = TaggerBundle.create(load_config(None), heads, tiny_tagger, default="politics")
    view = bundle.tagger("politics")
    assert view.encoder is tiny_tagger.encoder
    assert np.array_equal(view.head.weight.detach(), tiny_tagger.head.weight.detach())
    a, b = view.predict_proba(WORDS), tiny_tagger.predict_proba(WORDS)
    assert np.allclose(a[0], b[0], atol=1e-6)
    assert bundle.tagger("other").predict_proba(WORDS)[0].shape == (len(WORDS[0]), 3)
    assert bundle.tagger("politics") is view  # one view per domain
    with pytest.raises(ConfigError, match="unknown domain 'news'"):
        bundle.tagger("news")


def test_save_and_load(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = TaggerBundle.load(tiny_bundle)
    assert bundle.domains == ["news", "politics"] and bundle.default == "news"
    path = bundle.save(tmp_path / "copy")
    again = TaggerBundle.load(path)
    for name in bundle.domains:
        x, y = bundle.tagger(name).predict_proba(WORDS), again.tagger(name).predict_proba(WORDS)
        assert np.array_equal(x[0], y[0])
    meta = json.loads((path / "config.json").read_text())
    assert meta["heads"]["news"]["data"] == "conll2003" and meta["format"] == 2
    (path / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="weights missing"):
        TaggerBundle.load(path)
    with pytest.raises(ModelNotFoundError, match="not a cdlm checkpoint"):
        Tagger.load(tiny_bundle)  # a bundle is not a one-domain checkpoint


def test_fusion_and_causal_are_refused(tiny_tagger: Tagger) -> None:
    heads = {"politics": Head(labels=tiny_tagger.labels, data="politics")}
    for switch in ("fusion.enabled", "causal.explicit"):
        with pytest.raises(ConfigError, match="switch off"):
            TaggerBundle.create(load_config(None, {switch: True}), heads, tiny_tagger)
