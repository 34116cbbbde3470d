"""K-shot sampling: every type covered K times, deterministic per seed, on real CrossNER."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.data.bio import Sentence, entity_types
from cdlm.data.registry import load_split
from cdlm.data.sampling import k_shot, type_sentence_counts
from cdlm.errors import ConfigError


@pytest.fixture(scope="module")
def politics_train(crossner_dir: Path) -> list[Sentence]:
    return load_split("politics", "train", crossner_dir)


@pytest.mark.parametrize("k", [1, 5])
def test_every_type_covered(politics_train: list[Sentence], k: int) -> None:
    sample = k_shot(politics_train, k, seed=1)
    counts = type_sentence_counts(sample)
    assert set(counts) == set(entity_types(politics_train))
    assert min(counts.values()) >= k
    # Greedy stops as soon as each type has K: far fewer than all 200 sentences.
    assert len(sample) <= k * len(counts)
    assert len(set(map(id, sample))) == len(sample)  # no sentence twice
    positions = [politics_train.index(s) for s in sample]
    assert positions == sorted(positions)  # original order kept


def test_deterministic_per_seed(politics_train: list[Sentence]) -> None:
    a = k_shot(politics_train, 5, seed=3)
    assert a == k_shot(politics_train, 5, seed=3)
    assert a == k_shot(list(politics_train), 5, seed=3)
    assert a != k_shot(politics_train, 5, seed=4)


def test_rare_type_takes_all_it_has() -> None:
    rare = Sentence(("x",), ("B-rare",))
    common = [Sentence(("y", str(i)), ("B-common", "O")) for i in range(10)]
    plain = Sentence(("z",), ("O",))
    sample = k_shot([plain, rare, *common], 3, seed=0)
    assert rare in sample and plain not in sample
    assert type_sentence_counts(sample) == {"common": 3, "rare": 1}


def test_k_must_be_positive(politics_train: list[Sentence]) -> None:
    with pytest.raises(ConfigError, match="train.k_shot"):
        k_shot(politics_train, 0, seed=1)
