"""The causal module on tensors: masks, switches, alpha = 0, gradients into the features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cdlm.config import CausalConfig
from cdlm.model.causal import CausalModule, TagIndex

LABELS = ["O", "B-a", "I-a", "B-b", "I-b"]
DIM, TAGS = 32, len(LABELS)
INDEX = TagIndex(LABELS)


def _config(**kw) -> CausalConfig:
    base = {"explicit": True, "implicit": True, "alpha": 0.0, "heads": 4, "att_dim": 16}
    return CausalConfig(**(base | kw))


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(2, 6, DIM, generator=gen)
    word_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 1, 2, 0, 3, 0], [3, 4, 1, 0, -100, -100]])
    return h, word_mask, tags


def test_entity_mask_and_span_starts_follow_the_tags():
    _, word_mask, tags = _inputs()
    entity = INDEX.entity_mask(tags, word_mask)
    assert entity.tolist() == [
        [False, True, True, False, True, False],
        [True, True, True, False, False, False],
    ]
    # B-a after I-b starts a new span; I-a right after B-a does not.
    assert INDEX.span_starts(entity, tags).tolist() == [
        [False, True, False, False, True, False],
        [True, False, True, False, False, False],
    ]


@pytest.mark.parametrize("fill", ["zero", "learned"])
def test_mask_replaces_exactly_the_entity_positions(fill):
    h, word_mask, tags = _inputs()
    module = CausalModule(DIM, LABELS, _config(fill=fill, implicit=False))
    entity = INDEX.entity_mask(tags, word_mask)
    h_cf = module.explicit.mask_entities(h, entity, INDEX.span_starts(entity, tags))
    assert torch.equal(h_cf[~entity], h[~entity])  # context untouched
    if fill == "zero":
        assert torch.count_nonzero(h_cf[entity]) == 0  # the Hadamard product h * m
    else:
        assert not torch.isclose(h_cf[entity], h[entity]).any(dim=-1).all()
        fills = module.explicit.fill
        assert torch.equal(h_cf[0, 1], fills[0]) and torch.equal(h_cf[0, 2], fills[1])
    # The mirror view keeps only the entity words.
    h_ent = module.explicit.mask_context(h, entity)
    assert torch.equal(h_ent[entity], h[entity])
    if fill == "zero":
        assert torch.count_nonzero(h_ent[~entity]) == 0


def test_alpha_zero_returns_the_plain_scores_and_alpha_changes_only_entity_types():
    torch.manual_seed(0)
    h, word_mask, tags = _inputs()
    head = nn.Linear(DIM, TAGS)
    logits = head(h)
    plain = CausalModule(DIM, LABELS, _config(alpha=0.0)).eval()
    out, _ = plain(h, word_mask, logits, {}, head)
    assert torch.equal(out, logits)

    debiased = CausalModule(DIM, LABELS, _config(alpha=1.0)).eval()
    out, losses = debiased(h, word_mask, logits, {}, head)
    assert losses == {}  # no gold tags, no losses
    predicted = INDEX.entity_mask(logits.argmax(-1), word_mask)
    assert predicted.any()
    assert torch.equal(out[~predicted], logits[~predicted])  # non-entity words untouched
    assert not torch.equal(out[predicted], logits[predicted])
    assert torch.equal(out[..., 0], logits[..., 0])  # the O column is never moved
    # B- vs I- of a type keeps its margin: only types are re-ranked.
    for b, i in ((1, 2), (3, 4)):
        torch.testing.assert_close(out[..., b] - out[..., i], logits[..., b] - logits[..., i])
    # Training mode never debiases (the CE loss sees the plain scores).
    out_train, _ = debiased.train()(h, word_mask, logits, {}, head)
    assert torch.equal(out_train, logits)


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_each_switch_removes_its_computation():
    h, word_mask, tags = _inputs()
    head = nn.Linear(DIM, TAGS)
    batch = {"tags": tags}
    sizes, keys = {}, {}
    for explicit in (False, True):
        for implicit in (False, True):
            module = CausalModule(DIM, LABELS, _config(explicit=explicit, implicit=implicit))
            sizes[explicit, implicit] = _param_count(module)
            _, losses = module(h, word_mask, head(h), batch, head)
            keys[explicit, implicit] = set(losses)
    assert sizes[False, False] == 0 and keys[False, False] == set()
    assert keys[True, False] == {"ecf", "ent"} and keys[False, True] == {"icf"}
    assert keys[True, True] == {"ecf", "ent", "icf"}
    assert sizes[True, True] == sizes[True, False] + sizes[False, True]
    assert sizes[True, False] > 0 and sizes[False, True] > 0
    # l_ent = 0 drops the bias branch's loss.
    module = CausalModule(DIM, LABELS, _config(implicit=False, l_ent=0.0))
    assert set(module(h, word_mask, head(h), batch, head)[1]) == {"ecf"}


def test_losses_are_weighted_and_reach_the_features():
    h, word_mask, tags = _inputs()
    head = nn.Linear(DIM, TAGS)
    torch.manual_seed(0)
    module = CausalModule(DIM, LABELS, _config(l_ecf=0.5, l_icf=0.25))
    h = h.clone().requires_grad_(True)
    _, losses = module(h, word_mask, head(h), {"tags": tags}, head)
    for name in ("ecf", "icf"):
        (grad,) = torch.autograd.grad(losses[name], h, retain_graph=True)
        assert grad.abs().sum() > 0, name
    # The bias branch is fitted on detached features: it never shapes the encoder.
    assert losses["ent"].requires_grad
    (grad,) = torch.autograd.grad(losses["ent"], h, retain_graph=True, allow_unused=True)
    assert grad is None or grad.abs().sum() == 0
    # The weights scale the losses linearly.
    torch.manual_seed(0)
    module2 = CausalModule(DIM, LABELS, _config(l_ecf=1.0, l_icf=1.0)).eval()
    module.eval()
    _, l1 = module(h, word_mask, head(h), {"tags": tags}, head)
    module2.load_state_dict(module.state_dict())
    _, l2 = module2(h, word_mask, head(h), {"tags": tags}, head)
    assert torch.isclose(l1["ecf"] * 2, l2["ecf"]) and torch.isclose(l1["icf"] * 4, l2["icf"])


def test_relevance_is_a_share_in_unit_interval():
    h, word_mask, _ = _inputs()
    module = CausalModule(DIM, LABELS, _config(explicit=False))
    a = module.implicit.relevance(h * 10, nn.Linear(DIM, TAGS), INDEX.outside)
    assert a.shape == (2, 6) and (a >= 0).all() and (a <= 1).all()


def test_heads_must_divide_the_width():
    from cdlm.errors import ConfigError

    with pytest.raises(ConfigError, match="causal.heads"):
        CausalModule(30, LABELS, _config(heads=4))


# --- inside the real tagger (embedded MiniLM encoder) ------------------------------------------


@pytest.fixture(scope="module")
def causal_tagger():
    from cdlm.config import load_config
    from cdlm.model.tagger import Tagger

    config = load_config(overrides={"causal.explicit": True, "causal.implicit": True})
    torch.manual_seed(0)
    return Tagger.create(config, ["O", "B-person", "I-person", "B-location", "I-location"])


def test_gradients_reach_the_encoder_through_both_counterfactual_losses(causal_tagger):
    tagger = causal_tagger.train()
    batch = tagger.builder(
        [["Angela", "Merkel", "visited", "Paris", "."], ["He", "met", "Macron", "."]],
        [("B-person", "I-person", "O", "B-location", "O"), ("O", "O", "B-person", "O")],
    )
    out = tagger(batch)
    assert {"ner", "ecf", "ent", "icf"} <= set(out.losses)
    encoder_params = [p for p in tagger.encoder.parameters() if p.requires_grad]
    for name in ("ecf", "icf"):
        grads = torch.autograd.grad(
            out.losses[name], encoder_params, retain_graph=True, allow_unused=True
        )
        total = sum(g.abs().sum() for g in grads if g is not None)
        assert total > 0, f"{name} does not reach the encoder"


def test_tagger_switches_build_only_what_is_on(causal_tagger):
    from cdlm.model.tagger import Tagger

    base = causal_tagger.config
    labels = causal_tagger.labels
    enc, tok = causal_tagger.encoder, causal_tagger.tokenizer
    off = base.model_copy(update={"causal": CausalConfig()})
    assert Tagger(off, labels, enc, tok).causal is None
    only_explicit = base.model_copy(update={"causal": CausalConfig(explicit=True)})
    built = Tagger(only_explicit, labels, enc, tok).causal
    assert built.explicit is not None and built.implicit is None
    # alpha = 0 in eval mode: the tagger's scores are exactly those of head(h).
    tagger = causal_tagger.eval()
    batch = tagger.builder([["Merkel", "visited", "Paris"]])
    with torch.no_grad():
        h, mask = tagger.encode(batch)
        assert torch.equal(tagger(batch).logits, tagger.head(h))


def test_alpha_is_chosen_on_dev_and_ties_keep_the_plain_scores(causal_tagger):
    from cdlm.data.bio import Sentence
    from cdlm.experiments.debias import sweep_alpha
    from cdlm.experiments.evaluate import score_model

    dev = [
        Sentence(
            ("Angela", "Merkel", "visited", "Paris"), ("B-person", "I-person", "O", "B-location")
        ),
        Sentence(("Macron", "spoke", "."), ("B-person", "O", "O")),
    ]
    tagger = causal_tagger.eval()
    try:
        plain, _, _ = score_model(tagger, dev)
        best, points, scores = sweep_alpha(tagger, dev, [1.0, 0.0, 1.0, 3.0])
        assert [p.alpha for p in points] == [0.0, 1.0, 3.0]
        assert points[0].dev_f1 == plain.f1
        top = max(p.dev_f1 for p in points)
        assert best == min(p.alpha for p in points if p.dev_f1 == top)
        assert scores.f1 == top and tagger.config.causal.alpha == best
    finally:
        tagger.config.causal.alpha = 0.0
