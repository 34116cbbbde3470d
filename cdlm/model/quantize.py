"""int8 inference: torch dynamic quantization of the encoder's ``Linear`` layers.

The encoder's linear layers (attention projections and feed-forward) hold nearly all of its
weights and work; dynamic quantization stores their weights as int8 and quantizes activations on
the fly, per batch, so no calibration data is needed. Everything else (embeddings, layer norms,
the attention products, casing features, the head, decoding) stays fp32. It is for CPU inference
only: a quantized encoder cannot be trained or saved back into a checkpoint.

Measured against fp32 (throughput and F1 on the politics test set, same run) by
``evals/bench_corpus.py``.
"""

from __future__ import annotations

import warnings
from typing import Literal

from torch import nn

from cdlm.errors import ConfigError

Quantize = Literal["none", "int8"]
QUANTIZE_CHOICES: tuple[str, ...] = ("none", "int8")


def check_quantize(mode: str | None) -> Quantize:
    """``None``/``"none"`` or ``"int8"``; anything else is a one-line error."""
    if mode is None:
        return "none"
    if mode not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def quantize_int8(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` with every ``nn.Linear`` dynamically quantized to int8."""
    import torch

    was_training = encoder.training
    encoder.eval()
    with warnings.catch_warnings():
        # torch marks its eager quantization API deprecated in favour of torchao (not on PyPI
        # for CPU-only installs); it is still the one that needs no extra package.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            encoder, {nn.Linear}, dtype=torch.qint8, inplace=False
        )
    encoder.train(was_training)
    return quantized


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` holds dynamically quantized linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return any(isinstance(m, QLinear) for m in module.modules())


def quantize_tagger(model: nn.Module, mode: str | None) -> nn.Module:
    """Quantize ``model.encoder`` in place (``mode="int8"``) and return ``model``; a model whose
    taggers share one encoder (``model.encoder``) is quantized once for all of them."""
    if check_quantize(mode) == "none":
        return model
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"quantize: {type(model).__name__} has no encoder to quantize")
    if not is_quantized(encoder):
        model.encoder = quantize_int8(encoder)
    return model
