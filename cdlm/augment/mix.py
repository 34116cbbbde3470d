"""Mix-up: the originals plus, per original, the first ``r_e`` entity-level and ``r_c``
context-level semi-facts (in generation order), and a grid search over ``(r_e, r_c)``.

Semi-facts are generated and filtered once at the largest ratios; every grid point is then a
prefix of the same lists, so a smaller ratio is a subset of a larger one and the search costs
only the scoring (one target fine-tuning + dev evaluation per point in ``cdlm train``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from cdlm.augment.record import Generated
from cdlm.data.bio import Sentence


def select(
    generated: Sequence[Generated], entity_ratio: int, context_ratio: int
) -> list[Generated]:
    """At most ``entity_ratio`` entity-level and ``context_ratio`` context-level per origin."""
    cap = {"entity": entity_ratio, "context": context_ratio}
    taken: Counter[tuple[int, str]] = Counter()
    out: list[Generated] = []
    for g in generated:
        if taken[(g.origin, g.kind)] < cap[g.kind]:
            taken[(g.origin, g.kind)] += 1
            out.append(g)
    return out


def mix(
    originals: Sequence[Sentence],
    generated: Sequence[Generated],
    entity_ratio: int,
    context_ratio: int,
) -> tuple[list[Sentence], list[Generated]]:
    """The training set (originals first, then the selected semi-facts) and the selection."""
    chosen = select(generated, entity_ratio, context_ratio)
    return [*originals, *(g.sentence for g in chosen)], chosen


class GridPoint(BaseModel):
    entity_ratio: int
    context_ratio: int
    sentences: int  # training sentences at this point (originals + semi-facts)
    dev_f1: float


class GridResult(BaseModel):
    """The searched points with their dev F1 and the chosen one (highest F1; ties: fewer
    semi-facts, then the earlier point), recorded in the training results."""

    points: list[GridPoint]
    chosen: GridPoint


def grid_search(
    originals: Sequence[Sentence],
    generated: Sequence[Generated],
    grid: Sequence[tuple[int, int]],
    score: Callable[[list[Sentence], tuple[int, int]], float],
) -> GridResult:
    """Score every ``(r_e, r_c)`` in ``grid`` with ``score(train_sentences, ratios)`` (dev F1);
    points whose selection equals an earlier one's reuse its score instead of training again."""
    if not grid:
        raise ValueError("empty ratio grid")
    points = []
    scored: dict[tuple[int, ...], float] = {}  # same selection (e.g. nothing kept) -> same score
    position = {id(g): i for i, g in enumerate(generated)}
    for r_e, r_c in grid:
        train, chosen = mix(originals, generated, r_e, r_c)
        key = tuple(position[id(g)] for g in chosen)
        if key not in scored:
            scored[key] = score(train, (r_e, r_c))
        points.append(
            GridPoint(entity_ratio=r_e, context_ratio=r_c, sentences=len(train), dev_f1=scored[key])
        )
    best = max(range(len(points)), key=lambda i: (points[i].dev_f1, -points[i].sentences, -i))
    return GridResult(points=points, chosen=points[best])
