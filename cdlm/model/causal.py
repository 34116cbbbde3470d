"""Causal counterfactual module: interventions at the input (docs/DESIGN.md, "Causal module").

Entity bias is the shortcut "this name was usually a PERSON": it does not transfer across
domains, the context that *causes* a type does. The first version masked *features* after the
encoder; that is leaky (every word vector has already read its neighbours, so the "context-only"
features still knew the name) and it did not pay (alpha = 0 chosen in 14 of 14 runs, causal
-0.15 F1, the name-swap probe unchanged). This version intervenes on the **words**: each view is
one more pass of the same tagger (encoder -> casing -> [fusion] -> head) over changed input
(:mod:`cdlm.model.views`), run only on the sentences of the batch that hold an entity.

With ``z(x)`` the tagger's scores for input ``x``, gold tags ``y``, ``E`` the gold entity words
and ``p_type(z) = softmax(z) M`` the distribution over {O, type_1..type_k} (M sums each type's
B- and I- columns: "types, B/I merged"):

- **Context-only view** (``causal.context_view``): ``x_ctx`` = ``x`` with every entity word
  replaced by the encoder's mask token (same word count, so the tags align)::

      L_ctx = CE(z(x_ctx)[E], y[E])

  the context alone must carry the type.
- **Swap view** (``causal.swap_view``): ``x_swap`` = ``x`` with each gold span replaced by a
  name of the same type drawn from an entity base of *other* domains (set by training with
  :meth:`CausalModule.set_swap_names`; B-/I- re-tagged for the new length). Span lengths
  differ, so the comparison is per span, on the mean type distribution over its words::

      L_cons = mean_spans KL( p_type(z(x))[span]  ||  p_type(z(x_swap))[span'] )

  with ``p_type(z(x))`` detached: the factual prediction is the teacher; a name change must
  not change the type.
- **Debiasing at inference** (``causal.alpha > 0``): ``x_ent`` = ``x`` with every word that is
  not in a predicted entity (argmax of ``z(x)``) masked, and on the predicted entity words::

      z = z(x) - alpha * centred log p_type(z(x_ent))

  only entity *types* are moved: the bias (log-probability of each type given the name
  alone, centred over the types) is added to both tags of its type and 0 to ``O``, so the
  B-vs-I choice and the entity-vs-O decision stay. alpha is chosen on dev
  (``causal.alpha_grid``, :mod:`cdlm.experiments.debias`); 0 costs nothing.

Training loss: ``L = L_ner + l_ctx L_ctx + l_cons L_cons (+ l_icf L_icf)``.
Cost: one encoder pass (forward + backward) per view and batch, on the sentences with
entities; ``causal.view_schedule = "alternate"`` runs one view per batch in turn (half the
cost). Inference is unchanged unless alpha > 0 (one more pass over sentences with entities).

**Implicit counterfactual (cross-attention, ``causal.implicit``).** Target tag embeddings (the
head's rows for the non-O tags, detached: they are queries, the head is trained by the NER
loss) attend over the words; each word's attention is normalised over the tags plus a learned
*null* tag, so ``a_i = 1 - attention(null)`` lies in [0, 1] and is the share of word i claimed
by some tag. ``u_i = a_i h_i`` is the entity-relevant part, ``v_i = (1 - a_i) h_i`` the rest.
Both are re-read by their own self-attention block before the head: with a per-word linear
head alone, scaling ``h_i`` by ``a_i`` only changes a softmax temperature. The loss is::

    KL(p(z) || p(z_u)) + KL(uniform || p(z_v)) + sparsity * mean(a)

with ``p(z)`` detached. The sparsity prior is our addition: without it ``a = 1`` everywhere
satisfies both KL terms trivially (sufficiency / comprehensiveness / conciseness of rationale
extraction, Lei et al. 2016; DeYoung et al. 2020). It works on features, so it shares the
leak described above; it is kept only where dev says it pays (see the variants in config).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cdlm.config import CausalConfig
from cdlm.data.spans import label_types, tag_type
from cdlm.errors import ConfigError
from cdlm.model.views import Mention, context_only, entity_only, swap_entities

IGNORE = -100  # padding in the gold tag ids

# views(word lists, mask flags or None) -> (scores [B, W, L], word mask [B, W]): one more pass
# of the tagger over changed input (cdlm.model.tagger.Tagger.view_scores).
ViewFn = Callable[[list[list[str]], list[list[bool]] | None], tuple[torch.Tensor, torch.Tensor]]


class TagIndex(nn.Module):
    """What each BIO tag id means: outside, begin, and which type (as integer buffers)."""

    def __init__(self, labels: Sequence[str]) -> None:
        super().__init__()
        if "O" not in labels:
            raise ConfigError("causal: the label set has no 'O' tag")
        names = label_types(labels)
        types = {name: i for i, name in enumerate(names)}  # contiguous 0..n_types-1
        type_ids = [-1 if (etype := tag_type(lb)) is None else types[etype] for lb in labels]
        self.register_buffer("outside", torch.tensor([lb == "O" for lb in labels]), False)
        self.register_buffer("begin", torch.tensor([lb.startswith("B-") for lb in labels]), False)
        self.register_buffer("type_id", torch.tensor(type_ids), False)
        # [tags, 1 + types]: column 0 collects O, column 1 + t both tags of type t.
        matrix = torch.zeros(len(labels), len(types) + 1)
        matrix[torch.arange(len(labels)), torch.tensor(type_ids) + 1] = 1.0
        self.register_buffer("type_matrix", matrix, False)

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
    """The tagger hook: ``logits, losses = causal(h, word_mask, logits, batch, head, views)``.

    ``losses`` maps names to already-weighted scalars the tagger adds to its CE loss. The view
    losses need the batch's words and gold tags (``batch.words``, ``batch.tag_names``,
    ``batch.tags``) and are computed in training mode only; the implicit loss whenever gold
    tag ids are present. Debiasing (``alpha > 0``, explicit on) happens only in eval mode.
    """

    def __init__(self, dim: int, labels: Sequence[str], config: CausalConfig) -> None:
        super().__init__()
        if dim % config.heads:
            raise ConfigError(f"causal.heads: {config.heads} does not divide the width {dim}")
        self.config = config
        self.tags = TagIndex(labels)
        self.implicit = ImplicitCounterfactual(dim, config) if config.implicit else None
        # Names per type for the swap view (training only; not part of the checkpoint).
        self.swap_names: dict[str, tuple[Mention, ...]] = {}
        self._rng = random.Random(0)
        self._step = 0  # training batches seen (the "alternate" view schedule)

    def set_swap_names(self, names: Mapping[str, Sequence[Mention]], seed: int) -> None:
        """The entity base the swap view draws from, and the seed of its draws."""
        self.swap_names = {t: tuple(m) for t, m in names.items() if m}
        self._rng = random.Random(f"{seed}:swap")

    def forward(
        self,
        h: torch.Tensor,
        word_mask: torch.Tensor,
        logits: torch.Tensor,
        batch: Any,
        head: nn.Module,
        views: ViewFn | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses: dict[str, torch.Tensor] = {}
        gold = batch.get("tags") if isinstance(batch, Mapping) else getattr(batch, "tags", None)
        if gold is not None:
            gold = gold.to(logits.device)
            if self.config.explicit and self.training:
                losses.update(self._view_losses(logits, batch, gold, self._need(views)))
            if self.implicit is not None:
                icf = self.implicit.loss(h, word_mask, logits, head, self.tags.outside)
                losses["icf"] = self.config.l_icf * icf
        if not self.training and self.config.explicit and self.config.alpha != 0.0:
            logits = self.debias(logits, word_mask, batch, self._need(views))
        return logits, losses

    @staticmethod
    def _need(views: ViewFn | None) -> ViewFn:
        if views is None:
            raise ConfigError(
                "causal.explicit: the input views need the tagger's encoder (call the module "
                "through Tagger.forward)"
            )
        return views

    def _views_now(self) -> tuple[bool, bool]:
        """(context view, swap view) for this training batch."""
        ctx, swap = self.config.context_view, self.config.swap_view
        if self.config.view_schedule == "alternate" and ctx and swap:
            self._step += 1
            return self._step % 2 == 1, self._step % 2 == 0
        return ctx, swap

    def type_probs(self, z: torch.Tensor) -> torch.Tensor:
        """``p_type``: softmax over the tags summed per type, O first ([..., 1 + types])."""
        return z.softmax(-1) @ self.tags.type_matrix

    def _view_losses(self, logits, batch, gold, views: ViewFn) -> dict[str, torch.Tensor]:
        words, tags = getattr(batch, "words", None), getattr(batch, "tag_names", None)
        if not words or tags is None:
            raise ConfigError("causal.explicit: the batch carries no words/tags for the views")
        with_entities = [b for b, t in enumerate(tags) if any(tag != "O" for tag in t)]
        ctx_now, swap_now = self._views_now()
        zero = logits.sum() * 0.0
        losses: dict[str, torch.Tensor] = {}
        if ctx_now:
            losses["ctx"] = zero
            if with_entities:
                z_ctx, mask = views(
                    [list(words[b]) for b in with_entities],
                    [context_only(tags[b]) for b in with_entities],
                )
                g = gold[with_entities][:, : z_ctx.shape[1]]
                entity = self.tags.entity_mask(g, mask)
                losses["ctx"] = self.config.l_ctx * F.cross_entropy(z_ctx[entity], g[entity])
        if swap_now:
            losses["cons"] = zero
            if not self.swap_names:
                raise ConfigError(
                    "causal.swap_view: no entity base to draw names from (training sets it)"
                )
            swapped = []
            for b in with_entities:
                view = swap_entities(words[b], tags[b], self.swap_names, self._rng)
                if view is not None:
                    swapped.append((b, view))
            if swapped:
                z_swap, _ = views([v[0] for _, v in swapped], None)
                losses["cons"] = self.config.l_cons * self._consistency(
                    logits.detach(), z_swap, swapped
                )
        return losses

    def _consistency(self, logits, z_swap, swapped) -> torch.Tensor:
        """Mean over spans of KL(p_type factual || p_type swapped), span-averaged types."""
        p_full, p_swap = self.type_probs(logits), self.type_probs(z_swap)
        teacher, student = [], []
        for k, (b, (_, _, pairs)) in enumerate(swapped):
            for (s0, e0), (s1, e1) in pairs:
                teacher.append(p_full[b, s0:e0].mean(0))
                student.append(p_swap[k, s1:e1].mean(0))
        p, q = torch.stack(teacher), torch.stack(student)
        return (p * (p.clamp_min(1e-8).log() - q.clamp_min(1e-8).log())).sum(-1).mean()

    @torch.no_grad()
    def debias(self, logits, word_mask, batch, views: ViewFn) -> torch.Tensor:
        """``z(x) - alpha * centred log p_type(z(x_ent))`` on the predicted entity words."""
        entity = self.tags.entity_mask(logits.argmax(-1), word_mask)
        chosen = [b for b in range(entity.shape[0]) if entity[b].any()]
        if not chosen:
            return logits
        words = batch.words
        z_ent, _ = views(
            [list(words[b]) for b in chosen],
            [entity_only(entity[b, : len(words[b])].tolist()) for b in chosen],
        )
        bias = torch.zeros_like(logits)
        bias[chosen, : z_ent.shape[1]] = self.type_bias(z_ent)
        return logits - self.config.alpha * bias * entity.unsqueeze(-1)

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
