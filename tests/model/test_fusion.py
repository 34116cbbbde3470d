"""GCN label fusion (cdlm/model/fusion.py): shapes, gradients, and the on/off switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdlm.config import VARIANTS, load_config
from cdlm.graphs import build_graphs
from cdlm.model.fusion import LabelFusion, build_fusion

SOURCE_TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TARGET_TAGS = ["O", "B-country", "I-country", "B-politician", "I-politician"]


class _Batch:
    def __init__(self, tags: torch.Tensor | None) -> None:
        self.tags = tags


def _graphs(theta: float = 0.6):
    rng = np.random.default_rng(0)

    def probs(n: int) -> np.ndarray:
        p = rng.random((n, len(SOURCE_TAGS))) ** 4
        return p / p.sum(1, keepdims=True)

    src = [["O", "B-LOC", "I-LOC", "O", "B-PER", "I-PER"]] * 4
    tgt = [["O", "B-country", "O", "B-politician", "I-politician"]] * 4
    return build_graphs(
        [probs(len(s)) for s in src],
        src,
        [probs(len(s)) for s in tgt],
        tgt,
        source="conll2003",
        target="politics",
        source_tags=SOURCE_TAGS,
        target_tags=TARGET_TAGS,
        tau=1.0,
        theta=theta,
    )


def _fusion(dim: int = 32) -> LabelFusion:
    torch.manual_seed(0)
    config = load_config(overrides={**VARIANTS["gcn"], "fusion.gcn_hidden": 16})
    return LabelFusion.from_graphs(_graphs(), torch.randn(5, dim), TARGET_TAGS, config.fusion)


def test_forward_shapes_losses_and_backward():
    fusion = _fusion().train()
    assert int((fusion.adj_target > 0).sum()) > 0  # the hand-made graph has edges
    h = torch.randn(3, 6, 32, requires_grad=True)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 4:] = False
    tags = torch.tensor([[0, 1, 0, 3, 4, 0], [0] * 6, [3, 4, 0, 1, -100, -100]])
    out, losses = fusion(h, mask, _Batch(tags))
    assert out.shape == h.shape
    assert set(losses) == {"gm", "aux"} and all(v.ndim == 0 for v in losses.values())
    torch.testing.assert_close(out, h)  # W_o starts at zero: fusion starts as the identity
    (out.pow(2).sum() + sum(losses.values())).backward()
    for name in ("gcn1.lin.weight", "gcn2.lin.weight", "out.weight", "type_head.weight"):
        grad = dict(fusion.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # once W_o is non-zero, the attention and the GCN shape the output too
    with torch.no_grad():
        fusion.out.weight.normal_()
    fusion.zero_grad()
    out, _ = fusion(h, mask, _Batch(tags))
    out.sum().backward()
    assert not torch.allclose(out, h)
    assert fusion.query.weight.grad.abs().sum() > 0
    assert fusion.gcn1.lin.weight.grad.abs().sum() > 0
    beta = fusion.attention(h)
    np.testing.assert_allclose(beta.sum(-1), 1.0, rtol=1e-5)


def test_no_losses_in_eval_or_without_tags():
    fusion = _fusion()
    h, mask = torch.randn(2, 3, 32), torch.ones(2, 3, dtype=torch.bool)
    assert fusion.train()(h, mask, _Batch(None))[1] == {}
    assert fusion.eval()(h, mask, _Batch(torch.zeros(2, 3, dtype=torch.long)))[1] == {}


def test_theta_from_config_rebuilds_edges():
    config = load_config(overrides={**VARIANTS["gcn"], "fusion.theta": 0.01})
    fusion = LabelFusion.from_graphs(_graphs(0.9), torch.randn(5, 8), TARGET_TAGS, config.fusion)
    assert int(fusion.adj_target.count_nonzero()) == 0


@pytest.fixture(scope="module")
def tiny_taggers():
    """The same real-encoder tagger built twice: baseline config and gcn config (untrained; a
    test that changes one works on its own copy)."""
    from cdlm.model.tagger import Tagger

    made = {}
    for variant in ("baseline", "gcn"):
        config = load_config(overrides=VARIANTS[variant])
        torch.manual_seed(0)
        tagger = Tagger.create(config, TARGET_TAGS)
        source_head = torch.randn(len(SOURCE_TAGS), tagger.hidden_size)
        tagger.fusion = build_fusion(config, _graphs(), source_head, tagger.labels)
        made[variant] = tagger.eval()
    return made


def test_switch_removes_the_module(tiny_taggers):
    base, gcn = tiny_taggers["baseline"], tiny_taggers["gcn"]
    assert base.fusion is None and isinstance(gcn.fusion, LabelFusion)
    n_base = sum(p.numel() for p in base.parameters())
    n_fusion = sum(p.numel() for p in gcn.fusion.parameters())
    assert n_fusion > 0
    assert sum(p.numel() for p in gcn.parameters()) == n_base + n_fusion
    assert not any(k.startswith("fusion.") for k in base.state_dict())
    words = [["Merkel", "visited", "France", "."], ["The", "Senate", "voted"]]
    p_base = base.predict_proba(words)
    p_gcn = gcn.predict_proba(words)
    for a, b in zip(p_base, p_gcn, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # untrained fusion = identity


def test_checkpoint_round_trip_with_fusion(tiny_taggers, tmp_path):
    import copy

    from cdlm.model.tagger import Tagger

    gcn = copy.deepcopy(tiny_taggers["gcn"])  # changed below: the shared one stays untrained
    with torch.no_grad():
        gcn.fusion.out.weight.normal_(std=0.1)
    words = [["Merkel", "visited", "France", "."]]
    before = gcn.predict_proba(words)[0]
    loaded = Tagger.load(gcn.save(tmp_path / "ckpt"))
    assert isinstance(loaded.fusion, LabelFusion)
    torch.testing.assert_close(loaded.fusion.adj_target, gcn.fusion.adj_target)
    np.testing.assert_allclose(loaded.predict_proba(words)[0], before, atol=1e-5)
