"""The causal module: type distributions, debiasing that moves only types, switches, and the
input-level views inside the real tagger (losses, gradients into the encoder, alpha on dev)."""

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


class Words:
    """A batch as the views see it: words and their gold tag names."""

    def __init__(self, words, tags=None):
        self.words, self.tag_names, self.tags = words, tags, None


def _linear_views(head: nn.Module, seed: int = 0):
    """A deterministic stand-in for the tagger's extra pass (word -> fixed random vector,
    masked word -> zeros), so debiasing can be checked on tensors alone."""
    gen = torch.Generator().manual_seed(seed)
    table: dict[str, torch.Tensor] = {}

    def views(words, masked):
        width = max(len(w) for w in words)
        h = torch.zeros(len(words), width, DIM)
        mask = torch.zeros(len(words), width, dtype=torch.bool)
        for b, sent in enumerate(words):
            for i, word in enumerate(sent):
                mask[b, i] = True
                if masked is None or not masked[b][i]:
                    h[b, i] = table.setdefault(word, torch.randn(DIM, generator=gen))
        return head(h), mask

    return views


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


def test_type_probs_merge_b_and_i_and_keep_o():
    module = CausalModule(DIM, LABELS, _config())
    z = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.25, 0.15]]))
    p = module.type_probs(z)
    torch.testing.assert_close(p, torch.tensor([[0.1, 0.5, 0.4]]))


def test_alpha_zero_returns_the_plain_scores_and_alpha_changes_only_entity_types():
    torch.manual_seed(0)
    h, word_mask, _ = _inputs()
    head = nn.Linear(DIM, TAGS)
    logits = head(h)
    words = Words([[f"w{b}{i}" for i in range(int(word_mask[b].sum()))] for b in range(2)])
    views = _linear_views(head)
    plain = CausalModule(DIM, LABELS, _config(alpha=0.0)).eval()
    out, _ = plain(h, word_mask, logits, words, head, views)
    assert torch.equal(out, logits)

    debiased = CausalModule(DIM, LABELS, _config(alpha=1.0)).eval()
    out, losses = debiased(h, word_mask, logits, words, head, views)
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
    out_train, _ = debiased.train()(h, word_mask, logits, words, head, views)
    assert torch.equal(out_train, logits)


def test_debiasing_needs_the_views():
    from cdlm.errors import ConfigError

    h, word_mask, _ = _inputs()
    head = nn.Linear(DIM, TAGS)
    module = CausalModule(DIM, LABELS, _config(alpha=1.0)).eval()
    with pytest.raises(ConfigError, match="causal.explicit"):
        module(h, word_mask, head(h), Words([["a"] * 6, ["b"] * 4]), head)


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_each_switch_removes_its_computation():
    h, word_mask, tags = _inputs()
    head = nn.Linear(DIM, TAGS)
    batch = {"tags": tags}
    sizes, keys = {}, {}
    for implicit in (False, True):
        module = CausalModule(DIM, LABELS, _config(explicit=False, implicit=implicit))
        sizes[implicit] = _param_count(module)
        _, losses = module(h, word_mask, head(h), batch, head)
        keys[implicit] = set(losses)
    assert sizes[False] == 0 and keys[False] == set()
    assert sizes[True] > 0 and keys[True] == {"icf"}
    # The input-level views add no parameters: they are passes of the tagger itself.
    assert _param_count(CausalModule(DIM, LABELS, _config(implicit=False))) == 0


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

LABELS_PL = ["O", "B-person", "I-person", "B-location", "I-location"]
NAMES = {"person": (("Olof", "Palme"), ("Golda", "Meir")), "location": (("Oslo",), ("Lima",))}


@pytest.fixture(scope="module")
def causal_tagger():
    from cdlm.config import load_config
    from cdlm.model.tagger import Tagger

    config = load_config(overrides={"causal.explicit": True, "causal.implicit": True})
    torch.manual_seed(0)
    tagger = Tagger.create(config, LABELS_PL)
    tagger.causal.set_swap_names(NAMES, seed=1)
    return tagger


SENTS = [["Angela", "Merkel", "visited", "Paris", "."], ["He", "met", "Macron", "."], ["Hi", "."]]
TAGS_PL = [
    ("B-person", "I-person", "O", "B-location", "O"),
    ("O", "O", "B-person", "O"),
    ("O", "O"),
]


def test_masked_words_become_the_mask_token_with_no_shape(causal_tagger):
    tok = causal_tagger.tokenizer
    flags = [[True, True, False, False, False], [False, False, True, False], [False, False]]
    batch = causal_tagger.builder(SENTS, masked=flags)
    plain = causal_tagger.builder(SENTS)
    ids = batch.input_ids[batch.word_window, batch.word_position]
    for b, row in enumerate(flags):
        for i, flag in enumerate(row):
            assert (ids[b, i] == tok.mask_token_id) == flag
            assert (batch.shape_ids[b, i] == 0) == flag
    # Exactly the flagged words change: one piece each, every other piece as before.
    assert batch.word_mask.equal(plain.word_mask)
    assert int((batch.input_ids == tok.mask_token_id).sum()) == 3


def test_views_losses_are_nonzero_and_reach_the_encoder(causal_tagger):
    tagger = causal_tagger.train()
    calls = []
    real = tagger.view_scores

    def counting(words, masked=None):
        calls.append((words, masked))
        return real(words, masked)

    tagger.view_scores = counting
    try:
        out = tagger(tagger.builder(SENTS, TAGS_PL))
    finally:
        del tagger.view_scores
    assert {"ner", "ctx", "cons", "icf"} <= set(out.losses)
    assert out.losses["ctx"] > 0 and out.losses["cons"] > 0
    # Two extra passes, each over the two sentences that hold an entity only.
    (ctx_words, ctx_mask), (swap_words, swap_mask) = calls
    assert ctx_words == SENTS[:2] and swap_mask is None
    assert ctx_mask == [[True, True, False, True, False], [False, False, True, False]]
    assert swap_words[0][2:3] == ["visited"] and "Merkel" not in swap_words[0]
    assert "Macron" not in swap_words[1]
    encoder_params = [p for p in tagger.encoder.parameters() if p.requires_grad]
    for name in ("ctx", "cons", "icf"):
        grads = torch.autograd.grad(
            out.losses[name], encoder_params, retain_graph=True, allow_unused=True
        )
        total = sum(g.abs().sum() for g in grads if g is not None)
        assert total > 0, f"{name} does not reach the encoder"


def test_alternate_schedule_runs_one_view_per_batch(causal_tagger):
    config = causal_tagger.config.causal.model_copy(update={"view_schedule": "alternate"})
    module = CausalModule(causal_tagger.hidden_size, LABELS_PL, config)
    module.set_swap_names(NAMES, seed=1)
    tagger = causal_tagger.train()
    original = tagger.causal
    tagger.causal = module
    try:
        seen = [set(tagger(tagger.builder(SENTS, TAGS_PL)).losses) for _ in range(3)]
    finally:
        tagger.causal = original
    assert [s & {"ctx", "cons"} for s in seen] == [{"ctx"}, {"cons"}, {"ctx"}]


def test_swap_view_without_names_is_a_config_error(causal_tagger):
    from cdlm.errors import ConfigError

    module = CausalModule(causal_tagger.hidden_size, LABELS_PL, causal_tagger.config.causal)
    tagger = causal_tagger.train()
    original = tagger.causal
    tagger.causal = module
    try:
        with pytest.raises(ConfigError, match="causal.swap_view"):
            tagger(tagger.builder(SENTS, TAGS_PL))
    finally:
        tagger.causal = original


def test_tagger_switches_build_only_what_is_on(causal_tagger):
    from cdlm.model.tagger import Tagger

    base = causal_tagger.config
    labels = causal_tagger.labels
    enc, tok = causal_tagger.encoder, causal_tagger.tokenizer
    off = base.model_copy(update={"causal": CausalConfig()})
    assert Tagger(off, labels, enc, tok).causal is None
    only_explicit = base.model_copy(update={"causal": CausalConfig(explicit=True)})
    built = Tagger(only_explicit, labels, enc, tok).causal
    assert built is not None and built.implicit is None
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
