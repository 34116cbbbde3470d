"""Entity-level semi-facts: swap one whole entity span for another mention of the same type.

The new mention can have a different length, so the tags are rebuilt for it (``B-t`` then
``I-t``); the tokens around it keep theirs, which stays valid IOB2 because a span always ends
before an ``O`` or a ``B-`` tag. The entity base is every distinct mention per type in the target
training set; in FactMix's few-shot setting a second dataset (e.g. the CoNLL source) adds mentions
for the types it shares with the target (same type name), never new types.

Randomness comes from one ``random.Random`` per origin sentence seeded with ``(seed, index)``, so a
sentence's semi-facts do not change when other sentences are added or removed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cdlm.augment.record import Generated, Replacement
from cdlm.data.bio import Sentence, entity_types
from cdlm.data.spans import bio_spans

Mention = tuple[str, ...]


@dataclass(frozen=True)
class EntityBase:
    """Distinct mentions per entity type, in a fixed order (so sampling from them is
    reproducible). The one entity base of cdlm: FactMix swaps within it, and the entity-bias
    probe (:mod:`cdlm.experiments.probe`) draws its other-domain names from one."""

    mentions: dict[str, tuple[Mention, ...]]

    def alternatives(
        self, etype: str, current: Mention, *, ignore_case: bool = False
    ) -> tuple[Mention, ...]:
        """The mentions of ``etype`` other than ``current`` (compared as text, ignoring case,
        with ``ignore_case``)."""

        def key(mention: Mention) -> object:
            return " ".join(mention).lower() if ignore_case else mention

        taken = key(current)
        return tuple(m for m in self.mentions.get(etype, ()) if key(m) != taken)

    def __len__(self) -> int:
        return sum(len(m) for m in self.mentions.values())


def mentions_by_type(
    sentences: Iterable[Sentence], types: set[str] | None = None
) -> dict[str, list[Mention]]:
    """Distinct gold mentions per type (only ``types`` when given), in first-seen order."""
    found: dict[str, dict[Mention, None]] = {}
    for sent in sentences:
        for start, end, etype in bio_spans(sent.tags):
            if types is None or etype in types:
                found.setdefault(etype, {})[sent.tokens[start:end]] = None
    return {etype: list(mentions) for etype, mentions in found.items()}


def build_entity_base(
    sentences: Sequence[Sentence], extra: Sequence[Sentence] | None = None
) -> EntityBase:
    """Mentions from ``sentences``, plus those of ``extra`` for the types both share; sorted."""
    found = {t: set(m) for t, m in mentions_by_type(sentences).items()}
    if extra:
        shared = set(entity_types(sentences))
        for etype, mentions in mentions_by_type(extra, shared).items():
            found.setdefault(etype, set()).update(mentions)
    return EntityBase({t: tuple(sorted(m)) for t, m in sorted(found.items())})


def replace_span(sent: Sentence, start: int, end: int, mention: Mention, etype: str) -> Sentence:
    """Tokens ``[start, end)`` replaced by ``mention`` tagged as one ``etype`` span."""
    if not mention:
        raise ValueError("replacement mention is empty")
    new_tags = (f"B-{etype}",) + (f"I-{etype}",) * (len(mention) - 1)
    return Sentence(
        tokens=sent.tokens[:start] + tuple(mention) + sent.tokens[end:],
        tags=sent.tags[:start] + new_tags + sent.tags[end:],
        source=sent.source,
        line=sent.line,
    )


@dataclass
class EntityStats:
    """Why fewer than ``ratio`` semi-facts came out: reported by ``cdlm augment``, never fatal."""

    generated: int = 0
    sentences_without_entities: int = 0
    # Spans whose type has no other mention in the base (so they cannot be swapped), per type.
    no_alternative: Counter[str] = field(default_factory=Counter)
    # Sentences that got some but fewer than ``ratio`` semi-facts (too few distinct swaps).
    short: int = 0


def entity_semifacts(
    sentences: Sequence[Sentence], base: EntityBase, ratio: int, *, seed: int, attempts: int = 4
) -> tuple[list[Generated], EntityStats]:
    """Up to ``ratio`` distinct entity-level semi-facts per sentence (one span swapped in each)."""
    out: list[Generated] = []
    stats = EntityStats()
    if ratio == 0:
        return out, stats
    for index, sent in enumerate(sentences):
        spans = bio_spans(sent.tags)
        if not spans:
            stats.sentences_without_entities += 1
            continue
        choices: list[tuple[int, int, str, tuple[Mention, ...]]] = []
        for start, end, etype in spans:
            alts = base.alternatives(etype, sent.tokens[start:end])
            if alts:
                choices.append((start, end, etype, alts))
            else:
                stats.no_alternative[etype] += 1
        if not choices:
            continue
        rng = random.Random(f"{seed}:entity:{index}")
        seen: set[tuple[str, ...]] = {sent.tokens}
        made = 0
        for _ in range(ratio * attempts):
            if made == ratio:
                break
            start, end, etype, alts = choices[rng.randrange(len(choices))]
            mention = alts[rng.randrange(len(alts))]
            new = replace_span(sent, start, end, mention, etype)
            if new.tokens in seen:
                continue
            seen.add(new.tokens)
            old = " ".join(sent.tokens[start:end])
            edit = Replacement(start=start, end=end, old=old, new=" ".join(mention), label=etype)
            out.append(Generated(new, index, "entity", (edit,)))
            made += 1
        if made < ratio:
            stats.short += 1
    stats.generated = len(out)
    return out, stats
