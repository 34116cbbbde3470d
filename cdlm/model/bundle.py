"""Several domains in one model: one shared encoder (+ casing features) and a linear head per
domain (the default model: news plus the five CrossNER domains).

Why one encoder: six separate taggers would be six copies of the same 90 MB encoder, and a
user switching ``--domain`` would load another model. Only the heads differ: a head maps the
shared word features to one domain's BIO tags.

:meth:`TaggerBundle.tagger` returns a :class:`~cdlm.model.tagger.Tagger` *view* of one domain
that shares the encoder, casing features and that domain's head with the bundle (no copy), so
everything that takes a tagger (tagging, decoding, scoring, training steps) works per domain.
A bundle holds plain taggers only: label-graph fusion and the causal module are built per
target checkpoint (``cdlm train``), not per head.

Tied types (:meth:`TaggerBundle.tie_types`, multi-source training): the B-/I- rows of a type
name that several heads share (person, location, ...) become one parameter that each of those
heads reads (:class:`TiedHead`). Sharing the parameter keeps the rows equal by construction,
with no pull-together weight to choose; the optimizer sees one row, moved by the steps of every
domain that has the type. Every row is its own parameter, so a step of one domain leaves the
rows its head does not read untouched, as with untied heads. A tied bundle is untied
(:meth:`TaggerBundle.untie`) when saved, so the files are the same as any bundle's.

Files: ``model.safetensors`` (``encoder.*``, ``casing.*``, ``heads.<domain>.*``; the encoder is
stored once), ``config.json`` (``format`` 2, the heads with their labels and data domain, the
default head, the model and training config; runtime settings are the user's) and ``encoder/``
(tokenizer and architecture), so the folder loads alone and offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from cdlm.config import CdlmConfig
from cdlm.data.spans import tag_type
from cdlm.errors import ConfigError, ModelNotFoundError
from cdlm.model.encoder import load_pretrained
from cdlm.model.features import CasingFeatures
from cdlm.model.tagger import (
    HOW_TO_MAKE,
    Tagger,
    load_saved_encoder,
    load_weights,
    save_checkpoint,
    saved_config,
)

BUNDLE_FORMAT = 2


class Head(BaseModel):
    """One domain head: its BIO tags and the data domain it was trained on (a CrossNER name or
    a dataset folder; the ``news`` head's is ``conll2003``)."""

    labels: list[str]
    data: str


# Where each tag's row of a tied head lives: (True, k) = shared row k, (False, j) = own row j.
RowPlace = tuple[bool, int]


def tied_rows(
    labels: dict[str, list[str]],
) -> tuple[list[str], list[list[tuple[str, int]]], dict[str, list[RowPlace]]]:
    """How tied heads lay out their rows, from each head's tags: (the types two or more heads
    share; each shared row's (head, tag index) members; each head's place per tag). A tag of
    a shared type is one shared row for all heads (``B-person`` of every head); ``O`` and the
    other tags are the head's own rows, in order."""
    heads_of: dict[str, set[str]] = {}
    for name, tags in labels.items():
        for tag in tags:
            if (etype := tag_type(tag)) is not None:
                heads_of.setdefault(etype, set()).add(name)
    tied = sorted(t for t, names in heads_of.items() if len(names) > 1)
    shared: dict[str, int] = {}
    members: list[list[tuple[str, int]]] = []
    places: dict[str, list[RowPlace]] = {}
    for name, tags in labels.items():
        places[name], own = [], 0
        for i, tag in enumerate(tags):
            if tag_type(tag) not in tied:
                places[name].append((False, own))
                own += 1
                continue
            if tag not in shared:
                shared[tag] = len(members)
                members.append([])
            members[shared[tag]].append((name, i))
            places[name].append((True, shared[tag]))
    return tied, members, places


class SharedRows(nn.Module):
    """The rows tied heads share: each row's weight (``[1, d]``, decayed as a head's weight
    is) and bias its own parameter, so a step of one domain moves only the rows its head
    reads (the optimizer skips a parameter without a gradient)."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
        super().__init__()
        self.weight = nn.ParameterList([nn.Parameter(w.reshape(1, -1).clone()) for w in weights])
        self.bias = nn.ParameterList([nn.Parameter(b.reshape(1).clone()) for b in biases])


class TiedHead(nn.Module):
    """One domain's linear head whose rows are its own (``own``) or shared with other heads
    (``shared``, the same module in every tied head): ``weight`` and ``bias`` are put
    together per call, so a shared row is one parameter. Write rows (label initialisation)
    before tying: a write into the assembled ``weight`` reaches no parameter."""

    def __init__(self, shared: SharedRows, own: nn.Linear, places: list[RowPlace]) -> None:
        super().__init__()
        self.shared = shared
        self.own = own
        self.places = list(places)

    def _rows(self, shared: nn.ParameterList, own: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [shared[k] if is_shared else own[k : k + 1] for is_shared, k in self.places]
        )

    @property
    def weight(self) -> torch.Tensor:
        return self._rows(self.shared.weight, self.own.weight)

    @property
    def bias(self) -> torch.Tensor:
        return self._rows(self.shared.bias, self.own.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(features, self.weight, self.bias)

    def as_linear(self) -> nn.Linear:
        """A plain layer holding this head's rows as they are now (a copy, untied)."""
        weight = self.weight.detach()
        layer = nn.Linear(weight.shape[1], weight.shape[0]).to(weight.device)
        layer.load_state_dict({"weight": weight.clone(), "bias": self.bias.detach().clone()})
        return layer


class TaggerBundle(nn.Module):
    """One encoder and casing features shared by a head per domain."""

    def __init__(
        self,
        config: CdlmConfig,
        heads: dict[str, Head],
        encoder: nn.Module,
        tokenizer: Any,
        encoder_name: str | None = None,
        default: str | None = None,
    ) -> None:
        super().__init__()
        if config.fusion.enabled or config.causal.explicit or config.causal.implicit:
            raise ConfigError(
                "a model with several domain heads shares one plain tagger: switch off "
                "fusion.enabled and causal.explicit/implicit (those are per `cdlm train` run)"
            )
        if not heads:
            raise ConfigError("a model needs at least one domain head")
        if default is not None and default not in heads:
            raise ConfigError(f"default domain {default!r} is not one of {', '.join(heads)}")
        self.config = config
        self.specs = dict(heads)
        self.default = default or next(iter(heads))
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.encoder_name = encoder_name
        dim = encoder.config.hidden_size
        self.casing = CasingFeatures(dim) if config.encoder.casing_features else None
        self.heads = nn.ModuleDict(
            {name: nn.Linear(dim, len(head.labels)) for name, head in heads.items()}
        )
        self._views: dict[str, Tagger] = {}

    @classmethod
    def create(
        cls,
        config: CdlmConfig,
        heads: dict[str, Head],
        source: Tagger | None = None,
        default: str | None = None,
    ) -> TaggerBundle:
        """A bundle on ``source``'s encoder and casing features (taken over, not copied), or
        on the pre-trained encoder without one. A head whose tags equal the source's starts
        from the source head (the news head from the CoNLL pre-training); the others are new."""
        if source is None:
            encoder, tokenizer = load_pretrained(config.encoder.name)
            return cls(config, heads, encoder, tokenizer, config.encoder.name, default)
        bundle = cls(config, heads, source.encoder, source.tokenizer, source.encoder_name, default)
        if source.casing is not None and bundle.casing is not None:
            bundle.casing.load_state_dict(source.casing.state_dict())
        for name, head in heads.items():
            if head.labels == source.labels:
                bundle.heads[name].load_state_dict(source.head.state_dict())
        return bundle

    @property
    def domains(self) -> list[str]:
        return list(self.specs)

    def tagger(self, domain: str) -> Tagger:
        """The tagger of one domain: shares the encoder, the casing features and this domain's
        head with the bundle, so training or moving the bundle moves the view too."""
        if domain not in self.specs:
            raise ConfigError(f"unknown domain {domain!r}: this model has {', '.join(self.specs)}")
        if domain not in self._views:
            cfg = self.config.model_copy(deep=True)
            cfg.train.target = self.specs[domain].data
            view = Tagger(cfg, self.specs[domain].labels, self.encoder, self.tokenizer)
            view.encoder_name = self.encoder_name
            view.casing = self.casing
            view.head = self.heads[domain]
            view.train(self.training)
            self._views[domain] = view
        return self._views[domain]

    def tie_types(self) -> list[str]:
        """Tie the rows of every entity type that two or more heads share by name: all B-x rows
        become one parameter, all I-x rows another (weights and biases), each starting at the
        mean of the rows it replaces; ``O`` and the types of one head keep their own rows.
        Returns the tied types, sorted (none: nothing changes)."""
        self.untie()
        labels = {name: h.labels for name, h in self.specs.items()}
        tied, members, places = tied_rows(labels)
        if not tied:
            return []
        heads = {name: self.heads[name] for name in self.specs}
        with torch.no_grad():
            shared = SharedRows(
                [torch.stack([heads[n].weight[i] for n, i in rows]).mean(0) for rows in members],
                [torch.stack([heads[n].bias[i] for n, i in rows]).mean(0) for rows in members],
            )
            for name, head in heads.items():
                own_rows = [i for i, (is_shared, _) in enumerate(places[name]) if not is_shared]
                own = nn.Linear(head.weight.shape[1], len(own_rows)).to(head.weight.device)
                own.weight.copy_(head.weight[own_rows])
                own.bias.copy_(head.bias[own_rows])
                self.heads[name] = TiedHead(shared.to(head.weight.device), own, places[name])
        self._refresh_views()
        return tied

    def untie(self) -> None:
        """Give every tied head a plain layer of its own, holding the rows it has now (equal
        where they were tied): from here on, training moves each head's rows apart."""
        for name, head in list(self.heads.items()):
            if isinstance(head, TiedHead):
                self.heads[name] = head.as_linear()
        self._refresh_views()

    def _refresh_views(self) -> None:
        for name, view in self._views.items():
            view.head = self.heads[name]

    def export(self, domain: str) -> Tagger:
        """One domain as a standalone tagger, the checkpoint ``cdlm train`` saves: the shared
        encoder and casing features (not copied) and the head's rows in a plain layer (a
        copy), with the view's config (its ``train.target`` is the head's data)."""
        view = self.tagger(domain)
        model = Tagger(view.config, view.labels, self.encoder, self.tokenizer, self.encoder_name)
        model.casing = self.casing
        weight, bias = view.head.weight.detach(), view.head.bias.detach()
        model.head.load_state_dict({"weight": weight.clone(), "bias": bias.clone()})
        return model.to(weight.device).train(self.training)

    def save(self, directory: Path | str, extra: dict[str, Any] | None = None) -> Path:
        """Weights, ``config.json`` and ``encoder/`` (see the module docstring); a tied bundle
        is untied first, so the folder loads as any bundle."""
        self.untie()
        meta = {
            "format": BUNDLE_FORMAT,
            "heads": {name: head.model_dump() for name, head in self.specs.items()},
            "default": self.default,
            **(extra or {}),
        }
        return save_checkpoint(directory, self, meta)

    @classmethod
    def load(cls, directory: Path | str, device: str | torch.device = "cpu") -> TaggerBundle:
        """Rebuild a bundle saved by :meth:`save` (offline, no pre-trained weights needed)."""
        path = Path(directory)
        meta = Tagger.read_meta(path, formats=(BUNDLE_FORMAT,))
        config = saved_config(path, meta)
        try:
            heads = {name: Head.model_validate(h) for name, h in dict(meta["heads"]).items()}
            default = meta.get("default")
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelNotFoundError(
                f"{path / 'config.json'}: corrupt model ({first}); {HOW_TO_MAKE}"
            ) from None
        encoder, tokenizer = load_saved_encoder(path)
        bundle = cls(config, heads, encoder, tokenizer, meta.get("encoder_name"), default)
        load_weights(bundle, path / "model.safetensors", device)
        return bundle
