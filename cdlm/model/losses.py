"""Auxiliary losses of the label-structure fusion (docs/DESIGN.md, "Label-structure fusion").

- ``gromov_wasserstein_loss``: how far apart the source and target label graphs are, as the
  Gromov-Wasserstein distance between their intra-graph cost matrices. It compares the two
  graphs' *shapes* (which tags are near which), so it needs no correspondence between the two
  tag sets. POT's solver runs on torch tensors and returns a value whose gradient (through the
  envelope theorem, the optimal plan held fixed) reaches both cost matrices, hence the GCN.
- ``entity_type_loss``: multi-label BCE on which entity types occur in a sentence; it gives the
  sentence representation a global view of the target label set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_cost(emb: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine distances ``1 - cos(e_a, e_b)`` in [0, 2], [n, n]."""
    unit = F.normalize(emb, dim=-1)
    return (1.0 - unit @ unit.T).clamp_min(0.0)


def gromov_wasserstein_loss(
    emb_a: torch.Tensor, emb_b: torch.Tensor, p_a: torch.Tensor, p_b: torch.Tensor
) -> torch.Tensor:
    """GW distance between two node-embedding sets with marginals ``p_a``, ``p_b`` (sum 1).

    Computed in float64 (the solver's line search is unstable in float32) and returned in the
    embeddings' dtype.
    """
    import ot

    cost_a = cosine_cost(emb_a.double())
    cost_b = cosine_cost(emb_b.double())
    value = ot.gromov_wasserstein2(cost_a, cost_b, p_a.double(), p_b.double())
    return value.to(emb_a.dtype)


def entity_type_targets(
    word_tags: torch.Tensor, tag_type: torch.Tensor, n_types: int
) -> torch.Tensor:
    """Multi-hot [B, n_types]: which entity types a sentence's gold tags contain.

    ``word_tags`` [B, W] holds tag ids with -100 padding; ``tag_type[tag]`` is the type index of
    a B-/I- tag and -1 for ``O``.
    """
    valid = word_tags >= 0
    types = tag_type[word_tags.clamp_min(0)]
    types = torch.where(valid, types, torch.full_like(types, -1))
    hits = torch.zeros(word_tags.shape[0], n_types + 1, device=word_tags.device)
    # Column n_types collects O and padding and is dropped.
    hits.scatter_(1, torch.where(types >= 0, types, n_types), 1.0)
    return hits[:, :n_types]


def entity_type_loss(
    logits: torch.Tensor, word_tags: torch.Tensor, tag_type: torch.Tensor
) -> torch.Tensor:
    """Multi-label BCE between type logits [B, T] and the sentence's gold types."""
    targets = entity_type_targets(word_tags, tag_type, logits.shape[-1])
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
