"""Label-guided GCN fusion (docs/DESIGN.md, "Label-structure fusion").

Node features: the source tags' embeddings E_s are the rows of the source tagger's head (what
the source model learned each tag looks like); a target tag's embedding is ``E_t = P E_s``, the
source embeddings mixed by how the source tagger sees that tag's tokens. Both are layer-normed
(head rows are small and of uneven norm) and go through the same two ``GCNConv`` layers (ReLU
between, GCN self-loops added), each over its own weighted label graph: E_s', E_t'. E_s is a
fixed buffer: the source knowledge is read, not retrained. Tag-description encodings
(the optional extra of docs/DESIGN.md) are not used.

Marginals of the graph-matching loss are token counts + 1 (the +1 keeps a tag without tokens
in the transport problem). Both graphs have edges by construction (tau and theta rules in
:mod:`cdlm.graphs`); with a fixed tau 1 / theta 0.5 a confident source tagger gave a source
graph without edges, and the loss matched the target graph against self-loops only.

Fusion: each word attends over the target tags, ``beta_i = softmax_l(q_i . E_t'[l] / sqrt(d))``
with ``q_i = W_q h_i``, and gets ``h~_i = h_i + W_o sum_l beta_il E_t'[l]``. ``W_o`` starts at
zero, so an untrained fusion returns ``h`` unchanged and training starts from the baseline
model; the graph-matching loss trains the GCN from the first step.

Extra losses (training only, already weighted): Gromov-Wasserstein between the two graphs'
embeddings (``gm``) and the multi-label entity-type BCE (``aux``).

Everything the module needs at inference (E_s, P, both adjacency matrices, tag frequencies) is a
buffer of fixed shape, so a checkpoint's state dict restores it: build an empty module with
:meth:`LabelFusion.empty` and load the state dict, or a filled one with
:meth:`LabelFusion.from_graphs` when training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from cdlm.data.spans import label_types, tag_type
from cdlm.model.losses import entity_type_loss, gromov_wasserstein_loss


def entity_types_of(tags: list[str]) -> tuple[list[str], list[int]]:
    """Sorted entity types of a BIO tag list and each tag's type index (-1 for ``O``)."""
    types = sorted(label_types(tags))
    pos = {t: i for i, t in enumerate(types)}
    return types, [-1 if (etype := tag_type(t)) is None else pos[etype] for t in tags]


def _edges(adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index = adj.nonzero().T
    return index, adj[index[0], index[1]]


class LabelFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        n_source: int,
        target_tags: list[str],
        hidden: int = 256,
        l_gm: float = 0.1,
        l_aux: float = 0.1,
    ) -> None:
        from torch_geometric.nn import GCNConv

        super().__init__()
        types, tag_type = entity_types_of(target_tags)
        n_target = len(target_tags)
        self.l_gm, self.l_aux, self.hidden = l_gm, l_aux, hidden
        self.register_buffer("source_emb", torch.zeros(n_source, dim))
        self.register_buffer("P", torch.full((n_target, n_source), 1.0 / n_source))
        self.register_buffer("adj_source", torch.zeros(n_source, n_source))
        self.register_buffer("adj_target", torch.zeros(n_target, n_target))
        self.register_buffer("freq_source", torch.full((n_source,), 1.0 / n_source))
        self.register_buffer("freq_target", torch.full((n_target,), 1.0 / n_target))
        self.register_buffer("tag_type", torch.tensor(tag_type, dtype=torch.long))
        self.node_norm = nn.LayerNorm(dim)  # head rows are small; put them on the GCN's scale
        self.gcn1 = GCNConv(dim, hidden)
        self.gcn2 = GCNConv(hidden, hidden)
        self.query = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.type_head = nn.Linear(dim, max(len(types), 1))

    @classmethod
    def empty(cls, dim: int, n_source: int, target_tags: list[str], config: Any) -> LabelFusion:
        """A module of the right shapes, to be filled by ``load_state_dict``."""
        return cls(dim, n_source, target_tags, config.gcn_hidden, config.l_gm, config.l_aux)

    @classmethod
    def from_graphs(
        cls, graphs: Any, source_head_weight: torch.Tensor, target_tags: list[str], config: Any
    ) -> LabelFusion:
        """Fill the buffers from a :class:`cdlm.graphs.LabelGraphs` and the source head rows.

        The edges follow ``config.theta`` / ``config.edge_density`` (rebuilt from P and Q when
        the file used another rule), so tuning them needs no new graph file.
        """
        from cdlm.graphs import adjacency

        if list(graphs.target_tags) != list(target_tags):
            raise ValueError(
                f"graph target tags {graphs.target_tags} differ from the tagger's {target_tags}"
            )
        if not graphs.same_edge_rule(config.theta, config.edge_density):
            graphs = graphs.with_theta(config.theta, config.edge_density)
        n_source, dim = source_head_weight.shape
        if n_source != len(graphs.source_tags):
            raise ValueError(
                f"source head has {n_source} rows, graph has {len(graphs.source_tags)} tags"
            )
        module = cls.empty(dim, n_source, target_tags, config)

        def smooth(counts: list[int]) -> torch.Tensor:
            # +1 so an unseen tag keeps a little mass (GW marginals must be positive).
            c = torch.tensor(counts, dtype=torch.float32) + 1.0
            return c / c.sum()

        with torch.no_grad():
            module.source_emb.copy_(source_head_weight.detach().float())
            module.P.copy_(torch.as_tensor(graphs.P, dtype=torch.float32))
            n_t = len(target_tags)
            module.adj_source.copy_(torch.from_numpy(adjacency(n_source, graphs.source_edges)))
            module.adj_target.copy_(torch.from_numpy(adjacency(n_t, graphs.target_edges)))
            module.freq_source.copy_(smooth(graphs.source_counts))
            module.freq_target.copy_(smooth(graphs.target_counts))
        return module

    def label_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """E_s' and E_t': both tag sets through the shared two-layer GCN."""
        e_s = self.node_norm(self.source_emb)
        e_t = self.node_norm(self.P @ self.source_emb)
        return self._gcn(e_s, self.adj_source), self._gcn(e_t, self.adj_target)

    def _gcn(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        index, weight = _edges(adj)
        x = torch.relu(self.gcn1(x, index, weight))
        return self.gcn2(x, index, weight)

    def forward(
        self, h: torch.Tensor, word_mask: torch.Tensor, batch: Any = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``h`` [B, W, d] -> (h~ [B, W, d], weighted extra losses).

        The losses are computed only in training mode and when ``batch.tags`` (gold tag ids
        [B, W], -100 = padding) is present; otherwise the dict is empty.
        """
        word_tags = getattr(batch, "tags", None)
        e_source, e_target = self.label_embeddings()
        scores = self.query(h) @ e_target.T / math.sqrt(self.hidden)  # [B, W, L_t]
        beta = scores.softmax(dim=-1)
        fused = h + self.out(beta @ e_target)
        losses: dict[str, torch.Tensor] = {}
        if self.training and word_tags is not None:
            if self.l_gm > 0:
                gw = gromov_wasserstein_loss(e_source, e_target, self.freq_source, self.freq_target)
                losses["gm"] = self.l_gm * gw
            if self.l_aux > 0:
                mask = word_mask.unsqueeze(-1).to(fused.dtype)
                pooled = (fused * mask).sum(1) / mask.sum(1).clamp_min(1.0)
                losses["aux"] = self.l_aux * entity_type_loss(
                    self.type_head(pooled), word_tags, self.tag_type
                )
        return fused, losses

    def attention(self, h: torch.Tensor) -> np.ndarray:
        """beta [B, W, L_t] for inspection (which target tags each word attends to)."""
        with torch.no_grad():
            _, e_target = self.label_embeddings()
            scores = self.query(h) @ e_target.T / math.sqrt(self.hidden)
            return scores.softmax(dim=-1).cpu().numpy()


def build_fusion(
    config: Any, graphs: Any, source_head_weight: torch.Tensor, target_tags: list[str]
) -> LabelFusion | None:
    """The fusion module when ``config.fusion.enabled`` (``--variant gcn``), else ``None``:
    switched off, the tagger holds no fusion parameters and computes exactly the baseline."""
    if not config.fusion.enabled:
        return None
    return LabelFusion.from_graphs(graphs, source_head_weight, target_tags, config.fusion)


def empty_for_checkpoint(
    weights: Any, dim: int, target_tags: list[str], config: Any
) -> LabelFusion:
    """An unfilled module shaped like the one saved in ``weights`` (a safetensors file), for
    :meth:`cdlm.model.tagger.Tagger.load` to load the state dict into."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as fh:
        n_source = fh.get_slice("fusion.source_emb").get_shape()[0]
    return LabelFusion.empty(dim, n_source, target_tags, config.fusion)
