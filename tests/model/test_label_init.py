"""Label semantics: the head rows of each type start from the encoded label description."""

from __future__ import annotations

import torch

from cdlm.config import load_config
from cdlm.model.tagger import Tagger

LABELS = ["O", "B-politician", "I-politician", "B-party", "I-party", "B-election", "I-election"]
DESCRIPTIONS = {
    "politician": "a person who holds or seeks a political office",
    "party": "an organised political group that contests elections",
    "election": "a named vote in which officials are chosen",
}


def _tagger() -> Tagger:
    torch.manual_seed(0)
    return Tagger.create(load_config(), LABELS)


def test_rows_of_a_type_share_its_description_and_keep_the_random_scale() -> None:
    model = _tagger()
    before = model.head.weight.detach().clone()
    model.init_label_rows(DESCRIPTIONS, scale=2.0)
    rows = model.head.weight.detach()
    # O keeps its random row; B- and I- of a type start from the same description vector
    assert torch.equal(rows[0], before[0])
    for b, i in ((1, 2), (3, 4), (5, 6)):
        assert torch.equal(rows[b], rows[i])
        assert not torch.equal(rows[b], before[b])
    # every type row has `scale` x the mean norm of the random rows it replaced
    norms = rows[1:].norm(dim=-1)
    target = 2.0 * before.norm(dim=-1).mean()
    assert torch.allclose(norms, target.expand_as(norms), rtol=1e-5)
    # the types differ, and are centred: no shared direction survives
    assert torch.cosine_similarity(rows[1], rows[3], dim=0) < 0.99
    assert rows[[1, 3, 5]].mean(0).norm() < 0.5 * norms.mean()


def test_type_names_alone_give_other_rows_than_the_descriptions() -> None:
    described, named = _tagger(), _tagger()
    described.init_label_rows(DESCRIPTIONS)
    named.init_label_rows({})
    assert not torch.equal(described.head.weight[1], named.head.weight[1])
    assert torch.equal(named.head.weight[1], named.head.weight[2])
