"""int8 inference: torch dynamic quantization of the encoder's ``Linear`` layers.

The encoder's linear layers (attention projections and feed-forward) hold nearly all of its
weights and work; dynamic quantization stores their weights as int8 and quantizes activations on
the fly, per batch, so no calibration data is needed. Everything else (embeddings, layer norms,
the attention products, casing features, the head, decoding) stays fp32. It is for CPU inference
only: a quantized model cannot be trained or saved (``CDLM.save_pretrained`` refuses).

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
    """Quantize every ``nn.Linear`` of ``encoder`` to int8, in place (taggers that share this
    encoder object, like the domain views of a multi-domain model, all see it), and return it."""
    import torch

    encoder.eval()
    with warnings.catch_warnings():
        # torch marks its eager quantization API deprecated in favour of torchao (not on PyPI
        # for CPU-only installs); it is still the one that needs no extra package.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.ao.quantization.quantize_dynamic(
            encoder, {nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return encoder


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` holds dynamically quantized linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return any(isinstance(m, QLinear) for m in module.modules())


def quantize_encoder(model: nn.Module, mode: str | None) -> bool:
    """Quantize ``model.encoder`` in place when ``mode`` is ``"int8"`` (a model whose taggers
    share one encoder is quantized once for all of them); whether it is quantized now."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"quantize: {type(model).__name__} has no encoder to quantize")
    if check_quantize(mode) == "int8" and not is_quantized(encoder):
        quantize_int8(encoder)
    return is_quantized(encoder)
