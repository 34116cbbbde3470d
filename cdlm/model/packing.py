"""Int8 weights for shipping a model inside the package (``cdlm model ship``).

Why int8 per row and not fp16: the default model's fp32 weights are 91 MB; fp16 halves them
to 46 MB, just under the 50 MB budget of a wheel, with no room for a seventh head; int8 with one
fp32 scale per output row (symmetric, ``scale = max|row| / 127``) quarters them to about 23 MB,
and a per-row scale keeps every row's error within half a step of that row's own range (the
measured F1 difference of each head is in ``evals/results/default_model_shipped.md``).

Which tensors: every floating-point matrix (2-D) with at least :data:`MIN_ROW_LENGTH` columns:
the encoder's linear layers, the word and position embeddings and the heads. Vectors (biases,
LayerNorm) and small tensors stay fp32: they are a few hundred kilobytes and the most
sensitive. A packed file is a normal safetensors file: each packed tensor ``name`` is stored as
int8 under its own name with its scales under ``name`` + :data:`SCALE_SUFFIX`, and the header's
metadata says ``cdlm.weights = int8-rows``; :func:`unpack` gives back an fp32 state dict that
loads with ``strict=True`` into the same module.
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_KEY = "cdlm.weights"  # safetensors metadata key naming the packing
INT8_ROWS = "int8-rows"
SCALE_SUFFIX = ".__scale"
MIN_ROW_LENGTH = 16  # narrower matrices (casing features) stay fp32


def packed(tensor: torch.Tensor) -> bool:
    """Whether :func:`pack` stores ``tensor`` as int8 rows."""
    return tensor.is_floating_point() and tensor.dim() == 2 and tensor.shape[1] >= MIN_ROW_LENGTH


def pack(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An fp32 state dict as int8 rows + fp32 scales (see the module docstring)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        if not packed(tensor):
            out[name] = tensor
            continue
        scale = tensor.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        out[name] = torch.round(tensor / scale[:, None]).clamp(-127, 127).to(torch.int8)
        out[name + SCALE_SUFFIX] = scale.contiguous()
    return out


def unpack(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a :func:`pack` result; a packed tensor without its scales (or
    scales without their tensor) is a ``ValueError`` naming it."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            if name.removesuffix(SCALE_SUFFIX) not in tensors:
                raise ValueError(f"scales {name!r} without their tensor")
            continue
        if tensor.dtype != torch.int8:
            out[name] = tensor.to(torch.float32)
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is None or scale.shape != (tensor.shape[0],):
            raise ValueError(f"int8 tensor {name!r} without its per-row scales")
        out[name] = tensor.to(torch.float32) * scale.to(torch.float32)[:, None]
    return out


def save_packed(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` packed into the safetensors file ``path``."""
    from safetensors.torch import save_file

    save_file(pack(state), str(path), metadata={WEIGHTS_KEY: INT8_ROWS})


def packing_of(path: Path) -> str | None:
    """The packing named in a safetensors file's metadata (None: plain weights)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(WEIGHTS_KEY)


def load_packed(path: Path) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a packed file (errors: safetensors' own, or ``ValueError``)."""
    from safetensors.torch import load_file

    return unpack(load_file(str(path)))
