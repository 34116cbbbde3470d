"""K-shot sampling of a training set for the few-shot setting.

Greedy sampling as in Yang & Katiyar (EMNLP 2020, "Simple and Effective Few-Shot NER with
Structured Nearest Neighbor Learning"), the usual few-shot NER protocol:

1. Order the entity types from rarest to most frequent (by the number of sentences that contain
   them; ties by name), so rare types are served before frequent ones fill the budget.
2. For each type in that order, walk the sentences that contain it in a seeded random order and
   add each one not yet chosen until the type occurs in at least K chosen sentences. A chosen
   sentence counts for every type it contains.
3. Return the chosen sentences in their original order.

Every type thus appears in at least K chosen sentences (all of them when the set has fewer than
K); frequent types may appear in more, because sentences hold several types. Sentences with no
entity are never chosen. The result depends only on the sentences, K and the seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from cdlm.data.bio import Sentence
from cdlm.data.spans import label_types
from cdlm.errors import ConfigError


def _types(sent: Sentence) -> set[str]:
    return set(label_types(sent.tags))


def k_shot(sentences: Sequence[Sentence], k: int, seed: int) -> list[Sentence]:
    """K sentences per entity type (at least), chosen greedily and deterministically."""
    if k < 1:
        raise ConfigError(f"train.k_shot: K must be at least 1, got {k}")
    rng = random.Random(seed)
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, sent in enumerate(sentences):
        for etype in _types(sent):
            by_type[etype].append(index)

    chosen: set[int] = set()
    count: dict[str, int] = defaultdict(int)
    for etype in sorted(by_type, key=lambda t: (len(by_type[t]), t)):
        candidates = by_type[etype][:]
        rng.shuffle(candidates)
        for index in candidates:
            if count[etype] >= k:
                break
            if index in chosen:
                continue
            chosen.add(index)
            for other in _types(sentences[index]):
                count[other] += 1
    return [sentences[i] for i in sorted(chosen)]


def type_sentence_counts(sentences: Sequence[Sentence]) -> dict[str, int]:
    """How many sentences contain each entity type (sorted by type), e.g. to check a K-shot set."""
    count: dict[str, int] = defaultdict(int)
    for sent in sentences:
        for etype in _types(sent):
            count[etype] += 1
    return dict(sorted(count.items()))
