"""Causal counterfactual module (DESIGN.md section 3).

Entity bias is the shortcut "this name was usually a PERSON": it does not transfer across
domains, the context that *causes* a type does. The module sits between the features ``h``
(fused when fusion is on, encoder word features otherwise) and the tagger's linear head, and
returns the (possibly debiased) scores plus already-weighted auxiliary losses.

**Explicit counterfactual (masking).** A mask ``m`` (0 on entity words, 1 elsewhere; gold spans
in training, spans of the plain argmax at inference) gives the context-only sequence
``h_cf = h * m + fill * (1 - m)``. With ``fill = "zero"`` this is exactly DESIGN.md's Hadamard
product. The default ``"learned"`` uses learned fill vectors (one for a span's first word, one
for its other words) because a zero vector is position-blind: every masked word of a sentence
would send the same query, so a span's B- and I- words (and two different spans) could not be
told apart. One light self-attention block (plus sinusoidal word positions, for the same reason)
re-reads ``h_cf`` and the tagger's own head scores it: ``z_cf`` (sharing the head keeps the
context-only scores in the same tag space as ``z_full``, which the debiasing subtracts from).
``L_ecf = CE(z_cf at entity words, gold tag)`` — the context alone must carry the type.

At inference ``z = z_full - alpha * z_ent`` on the predicted entity words (other words keep
``z_full``), where ``z_ent`` reads the entity words with their context masked (the mirror
image of ``h_cf``). Two choices DESIGN.md leaves open:

- ``z_ent`` needs a scorer that has seen entity-only inputs, so a second view of the same block
  is fitted with ``CE(z_ent, gold)`` on *detached* features and a *detached* head (weight
  ``l_ent``): it estimates the name-only bias but never pushes the encoder towards it.
- Only the entity *type* is debiased. The bias is ``log p(type | entity words only)`` (the
  entity-tag softmax of ``z_ent``, summed over each type's B- and I- tags), centred over the
  types and added to both tags of its type; ``O`` gets 0. Subtracting it therefore re-ranks
  types without moving the B-vs-I choice or the entity-vs-O decision. (A first version
  subtracted the raw centred ``z_ent`` per tag: it also flipped B- and I- and broke spans —
  politics dev F1 62.6 -> 8.7 at alpha 0.5.)

``alpha = 0`` skips all of this and returns the head's scores unchanged (the same tensor).

**Implicit counterfactual (cross-attention).** Target tag embeddings (the head's rows for the
non-O tags, detached: they are queries, the head is trained by the NER loss) attend over the
words; each word's attention is normalised over the tags plus a learned *null* tag, so
``a_i = 1 - attention(null)`` lies in [0, 1] and is the share of word i claimed by some tag.
``u_i = a_i h_i`` is the entity-relevant part, ``v_i = (1 - a_i) h_i`` the rest. Both are
re-read by their own self-attention block before the head: with a per-word linear head alone,
scaling ``h_i`` by ``a_i`` only changes a softmax temperature, so the split would be
meaningless. The loss is DESIGN.md's

    KL(p(z) || p(z_u)) + KL(uniform || p(z_v)) + sparsity * mean(a)

with ``p(z)`` detached (the full prediction is the teacher, not pulled towards the parts). The
sparsity prior is our addition: without it ``a = 1`` everywhere satisfies both KL terms
trivially; with it the loss is the sufficiency / comprehensiveness / conciseness objective of
rationale extraction (Lei et al. 2016; DeYoung et al. 2020), applied to token features.

Known limit: the encoder is contextual, so masking *features* after it is leaky (an entity
word's vector has already seen its context and vice versa). Masking the input words instead
would need a second encoder pass per batch; this module keeps DESIGN.md's feature masking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cdlm.config import CausalConfig
from cdlm.errors import ConfigError

IGNORE = -100  # padding in the gold tag ids


class TagIndex(nn.Module):
    """What each BIO tag id means: outside, begin, and which type (as integer buffers)."""

    def __init__(self, labels: Sequence[str]) -> None:
        super().__init__()
        if "O" not in labels:
            raise ConfigError("causal: the label set has no 'O' tag")
        names = dict.fromkeys(label[2:] for label in labels if label != "O")
        types = {name: i for i, name in enumerate(names)}  # contiguous 0..n_types-1
        type_ids = [types[label[2:]] if label != "O" else -1 for label in labels]
        self.register_buffer("outside", torch.tensor([lb == "O" for lb in labels]), False)
        self.register_buffer("begin", torch.tensor([lb.startswith("B-") for lb in labels]), False)
        self.register_buffer("type_id", torch.tensor(type_ids), False)

    def entity_mask(self, tag_ids: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """True on real words whose tag is not ``O`` (padding ``-100`` and ``O`` are False)."""
        valid = (tag_ids != IGNORE) & word_mask.bool()
        safe = tag_ids.clamp(min=0)
        return valid & ~self.outside[safe]

    def span_starts(self, entity: torch.Tensor, tag_ids: torch.Tensor) -> torch.Tensor:
        """True on the first word of each entity span: a ``B-`` word, or an entity word whose
        left neighbour is no entity or another type (a stray ``I-`` from an argmax)."""
        safe = tag_ids.clamp(min=0)
        prev_entity = F.pad(entity[:, :-1], (1, 0), value=False)
        prev_type = F.pad(self.type_id[safe][:, :-1], (1, 0), value=-1)
        same_type = prev_type == self.type_id[safe]
        return entity & (self.begin[safe] | ~prev_entity | ~same_type)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """The fixed Transformer position code ``[length, dim]`` (no parameters, any length)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    rate = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    code = torch.zeros(length, dim, device=device)
    code[:, 0::2] = torch.sin(pos * rate)
    code[:, 1::2] = torch.cos(pos * rate[: dim // 2])
    return code


class Reader(nn.Module):
    """The light contextual layer: one pre-norm self-attention block over word positions.

    Word positions (a learned multiple of the sinusoidal code) enter the block's input and are
    taken off its output again, so they steer attention without adding a position-dependent
    offset to the features the head reads (the residual path carries ``x`` unchanged)."""

    def __init__(self, dim: int, config: CausalConfig) -> None:
        super().__init__()
        self.position_scale = nn.Parameter(torch.tensor(0.5))
        self.block = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=config.heads,
            dim_feedforward=config.ff_mult * dim,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )

    def forward(self, x: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        code = sinusoidal_positions(x.shape[1], x.shape[2], x.device).to(x.dtype)
        positions = self.position_scale * code
        return self.block(x + positions, src_key_padding_mask=~word_mask.bool()) - positions


def _linear_head(head: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ConfigError("causal: the tagger head must be a linear layer (tagger.head.weight)")
    return weight, getattr(head, "bias", None)


class ExplicitCounterfactual(nn.Module):
    """Masking counterfactual: context-only scores (loss) and entity-only bias (inference)."""

    def __init__(self, dim: int, config: CausalConfig) -> None:
        super().__init__()
        self.learned_fill = config.fill == "learned"
        if self.learned_fill:
            # Rows: 0 = first word of a masked span, 1 = other span words, 2 = masked context.
            self.fill = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.reader = Reader(dim, config)

    def mask_entities(
        self, h: torch.Tensor, entity: torch.Tensor, starts: torch.Tensor
    ) -> torch.Tensor:
        """``h_cf``: entity words replaced (zero or learned fill), all other words unchanged."""
        keep = (~entity).unsqueeze(-1).to(h.dtype)  # the mask vector m
        if not self.learned_fill:
            return h * keep
        fill = torch.where(starts.unsqueeze(-1), self.fill[0], self.fill[1])
        return h * keep + fill * (1.0 - keep)

    def mask_context(self, h: torch.Tensor, entity: torch.Tensor) -> torch.Tensor:
        """The mirror view: only the entity words are kept."""
        keep = entity.unsqueeze(-1).to(h.dtype)
        if not self.learned_fill:
            return h * keep
        return h * keep + self.fill[2] * (1.0 - keep)

    def context_scores(self, h, word_mask, entity, starts, head: nn.Module) -> torch.Tensor:
        return head(self.reader(self.mask_entities(h, entity, starts), word_mask))

    def entity_scores(self, h, word_mask, entity, head: nn.Module, *, detach: bool):
        """``z_ent``; with ``detach`` the features and head are constants (bias fitting)."""
        weight, bias = _linear_head(head)
        if detach:
            h = h.detach()
            weight = weight.detach()
            bias = bias.detach() if bias is not None else None
        return F.linear(self.reader(self.mask_context(h, entity), word_mask), weight, bias)


class ImplicitCounterfactual(nn.Module):
    """Cross-attention split of each word into an entity-relevant part and the rest."""

    def __init__(self, dim: int, config: CausalConfig) -> None:
        super().__init__()
        self.query = nn.Linear(dim, config.att_dim)
        self.key = nn.Linear(dim, config.att_dim)
        self.null = nn.Parameter(torch.zeros(config.att_dim))
        self.reader = Reader(dim, config)
        self.sparsity = config.sparsity

    def relevance(self, h: torch.Tensor, head: nn.Module, outside: torch.Tensor) -> torch.Tensor:
        """``a [B, W]`` in [0, 1]: the share of each word's attention on the non-O tags."""
        weight, _ = _linear_head(head)
        tags = self.query(weight[~outside].detach())  # [T-1, att]
        queries = torch.cat([tags, self.null[None]], dim=0)  # null tag last
        scores = self.key(h) @ queries.T / math.sqrt(queries.shape[-1])  # [B, W, T]
        return 1.0 - scores.softmax(dim=-1)[..., -1]

    def loss(self, h, word_mask, logits, head: nn.Module, outside: torch.Tensor) -> torch.Tensor:
        a = self.relevance(h, head, outside).unsqueeze(-1)
        z_u = head(self.reader(a * h, word_mask))
        z_v = head(self.reader((1.0 - a) * h, word_mask))
        valid = word_mask.bool()
        p_full = logits.detach().log_softmax(-1)[valid]
        log_u = z_u.log_softmax(-1)[valid]
        log_v = z_v.log_softmax(-1)[valid]
        if p_full.numel() == 0:
            return h.sum() * 0.0
        sufficiency = F.kl_div(log_u, p_full, log_target=True, reduction="batchmean")
        uniform = torch.full_like(log_v, -math.log(log_v.shape[-1]))
        uninformative = F.kl_div(log_v, uniform, log_target=True, reduction="batchmean")
        return sufficiency + uninformative + self.sparsity * a.squeeze(-1)[valid].mean()


class CausalModule(nn.Module):
    """The tagger hook: ``logits, losses = causal(h, word_mask, logits, batch, head)``.

    ``losses`` maps names to already-weighted scalars the tagger adds to its CE loss; they are
    computed whenever the batch carries gold tag ids (``batch.tags`` or ``batch["tags"]``,
    ``-100`` = pad). Debiasing (``alpha > 0``, explicit on) happens only in eval mode.
    """

    def __init__(self, dim: int, labels: Sequence[str], config: CausalConfig) -> None:
        super().__init__()
        if dim % config.heads:
            raise ConfigError(f"causal.heads: {config.heads} does not divide the width {dim}")
        self.config = config
        self.tags = TagIndex(labels)
        self.explicit = ExplicitCounterfactual(dim, config) if config.explicit else None
        self.implicit = ImplicitCounterfactual(dim, config) if config.implicit else None

    def forward(
        self,
        h: torch.Tensor,
        word_mask: torch.Tensor,
        logits: torch.Tensor,
        batch: Any,
        head: nn.Module,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        gold = batch.get("tags") if isinstance(batch, Mapping) else getattr(batch, "tags", None)
        if gold is not None:
            gold = gold.to(logits.device)
            if self.explicit is not None:
                losses.update(self._explicit_losses(h, word_mask, gold, head))
            if self.implicit is not None:
                icf = self.implicit.loss(h, word_mask, logits, head, self.tags.outside)
                losses["icf"] = self.config.l_icf * icf
        if not self.training and self.explicit is not None and self.config.alpha != 0.0:
            logits = self.debias(h, word_mask, logits, head)
        return logits, losses

    def _explicit_losses(self, h, word_mask, gold, head) -> dict[str, torch.Tensor]:
        assert self.explicit is not None
        entity = self.tags.entity_mask(gold, word_mask)
        starts = self.tags.span_starts(entity, gold)
        z_cf = self.explicit.context_scores(h, word_mask, entity, starts, head)
        if not entity.any():  # nothing to predict from context in this batch
            zero = z_cf.sum() * 0.0
            return {"ecf": zero, "ent": zero}
        ecf = F.cross_entropy(z_cf[entity], gold[entity])
        losses = {"ecf": self.config.l_ecf * ecf}
        if self.config.l_ent > 0:
            z_ent = self.explicit.entity_scores(h, word_mask, entity, head, detach=True)
            losses["ent"] = self.config.l_ent * F.cross_entropy(z_ent[entity], gold[entity])
        return losses

    @torch.no_grad()
    def debias(self, h, word_mask, logits, head) -> torch.Tensor:
        """``z_full - alpha * z_ent`` on the words of the spans predicted by ``z_full``."""
        assert self.explicit is not None
        predicted = logits.argmax(-1)
        entity = self.tags.entity_mask(predicted, word_mask)
        if not entity.any():
            return logits
        z_ent = self.explicit.entity_scores(h, word_mask, entity, head, detach=True)
        return logits - self.config.alpha * self.type_bias(z_ent) * entity.unsqueeze(-1)

    def type_bias(self, z_ent: torch.Tensor) -> torch.Tensor:
        """Centred ``log p(type | entity words only)``, copied to the type's B- and I- columns;
        0 in the ``O`` column."""
        is_entity_tag = ~self.tags.outside
        type_id = self.tags.type_id
        logp = torch.full_like(z_ent, float("-inf"))
        logp[..., is_entity_tag] = z_ent[..., is_entity_tag].log_softmax(-1)
        n_types = int(type_id.max()) + 1
        per_type = torch.stack([logp[..., type_id == t].logsumexp(-1) for t in range(n_types)], -1)
        per_type = per_type - per_type.mean(-1, keepdim=True)
        bias = torch.zeros_like(z_ent)
        bias[..., is_entity_tag] = per_type[..., type_id[is_entity_tag]]
        return bias
