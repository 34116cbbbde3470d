"""Mix-up: prefixes per origin and kind, and the grid search's choice."""

from __future__ import annotations

from collections import Counter

from cdlm.augment.entity import build_entity_base, entity_semifacts
from cdlm.augment.mix import grid_search, mix, select


def test_select_takes_the_first_r_of_each_kind(politics_train):
    sents = politics_train[:10]
    gen, _ = entity_semifacts(sents, build_entity_base(politics_train), 8, seed=1)
    small = select(gen, 3, 0)
    assert Counter(g.origin for g in small) == Counter({i: 3 for i in range(10)})
    assert small == [g for g in gen if sum(h.origin == g.origin for h in gen[: gen.index(g)]) < 3]
    train, chosen = mix(sents, gen, 2, 5)
    assert train[: len(sents)] == sents
    assert len(train) == len(sents) + 20 == len(sents) + len(chosen)
    assert select(gen, 0, 0) == []


def test_grid_search_picks_best_dev_and_records_all(politics_train):
    sents = politics_train[:5]
    gen, _ = entity_semifacts(sents, build_entity_base(politics_train), 8, seed=1)
    seen = []

    def score(train, ratios):
        seen.append((len(train), ratios))
        return {(0, 0): 0.50, (2, 0): 0.61, (8, 0): 0.61}[ratios]

    result = grid_search(sents, gen, [(0, 0), (2, 0), (8, 0)], score)
    assert seen == [(5, (0, 0)), (15, (2, 0)), (45, (8, 0))]
    assert [p.dev_f1 for p in result.points] == [0.50, 0.61, 0.61]
    # tie on dev F1: the smaller augmented set wins
    assert (result.chosen.entity_ratio, result.chosen.context_ratio) == (2, 0)


def test_grid_search_does_not_retrain_an_identical_selection(politics_train):
    sents = politics_train[:3]
    calls = []
    result = grid_search(sents, [], [(8, 5), (2, 1), (0, 0)], lambda t, r: calls.append(r) or 0.4)
    assert calls == [(8, 5)]  # nothing generated: every point trains on the same originals
    assert (result.chosen.entity_ratio, result.chosen.context_ratio) == (8, 5)
