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

    def save(self, directory: Path | str, extra: dict[str, Any] | None = None) -> Path:
        """Weights, ``config.json`` and ``encoder/`` (see the module docstring)."""
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
