"""A real tagger checkpoint whose word probabilities are known by construction.

Tests of what happens *after* tagging (offsets, routing, calibration) need taggers whose outputs
they can compute by hand. ``write_shape_checkpoint`` builds a real :class:`Tagger` (embedded
encoder, casing features, linear head), sets its weights so that a word's tag distribution is
exactly the row of ``table`` for the word's shape class (``cdlm.model.features.SHAPES``:
``init-cap``, ``all-caps``, ``has-digit`` ...), and saves it like ``cdlm train`` would. It loads,
windows, tags and decodes through the same code as any checkpoint.

How: shape ``s`` adds ``SCALE`` to feature dimension ``s`` (the casing embedding), and the head
reads dimension ``s`` with weights ``log p / SCALE``. At ``SCALE = 1e8`` the encoder's own
features (about +-5) vanish below float32 resolution, so the logits are ``log p`` to about 1e-6.
"""

from __future__ import annotations

import math
from pathlib import Path

SCALE = 1e8
ABSENT = -30.0  # the logit of a tag the table leaves out (probability ~1e-13)


def bio(types: list[str]) -> list[str]:
    return ["O", *(f"{p}-{t}" for t in sorted(types) for p in ("B", "I"))]


def write_shape_checkpoint(
    path: Path, labels: list[str], table: dict[str, dict[str, float]], target: str = "politics"
) -> Path:
    """Save a tagger whose P(tag | word) is ``table[shape of word]`` (default ``{"O": 1}``)."""
    import torch

    from cdlm.config import load_config
    from cdlm.model.features import SHAPES
    from cdlm.model.tagger import Tagger

    unknown = {shape for shape in table if shape not in SHAPES} | {
        tag for row in table.values() for tag in row if tag not in labels
    }
    assert not unknown, f"not a shape or label: {unknown}"
    config = load_config(None, {"train.target": target})
    model = Tagger.create(config, labels)
    assert model.casing is not None and model.fusion is None and model.causal is None
    with torch.no_grad():
        model.casing.embedding.weight.zero_()
        model.head.weight.zero_()
        model.head.bias.zero_()
        for s, shape in enumerate(SHAPES[1:], start=1):
            row = table.get(shape, {"O": 1.0})
            assert abs(sum(row.values()) - 1.0) < 1e-9, (shape, row)
            model.casing.embedding.weight[s, s] = SCALE
            for j, label in enumerate(labels):
                p = row.get(label, 0.0)
                model.head.weight[j, s] = (math.log(p) if p > 0 else ABSENT) / SCALE
    return model.save(path)
