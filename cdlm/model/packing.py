"""Packed weights for shipping a model inside the package (``cdlm model ship``).

The default model's fp32 weights are 91 MB; the wheel's budget is 50 MB. What is packed how:

- **The word-embedding table** (``*word_embeddings.weight``, half of MiniLM's parameters): int8
  with one fp32 scale per row (symmetric, ``scale = max|row| / 127``). A row is looked up, never
  multiplied through a layer, so its rounding error stays within half a step of that row's own
  range and is not compounded.
- **Every other matrix** (attention, feed-forward, heads, position embeddings): fp16, whose
  relative error (about 5e-4) is far below anything a tag decision feels.
- **Vectors and scalars** (biases, LayerNorm): fp32, a few hundred kilobytes.

Why not int8 rows everywhere (22 MB): on the default model `cdlm model ship` refused it (F1
moved by up to 0.36 points, ai test, over the 0.2 tolerance); fp16 everywhere (46 MB) sits at
the edge of the budget with no room for another head. This mix is about 33 MB; its measured F1
moves are in ``evals/results/default_model_shipped.md``.

A packed file is a normal safetensors file: an int8 tensor ``name`` has its scales under
``name`` + :data:`SCALE_SUFFIX`, and the header's metadata says ``cdlm.weights`` =
:data:`PACKED`; :func:`unpack` gives back an fp32 state dict that loads with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHTS_KEY = "cdlm.weights"  # safetensors metadata key naming the packing
PACKED = "int8-embeddings+fp16"
SCALE_SUFFIX = ".__scale"
INT8_SUFFIX = "word_embeddings.weight"  # the lookup tables stored as int8 rows


def packing_of_tensor(name: str, tensor: torch.Tensor) -> str:
    """How :func:`pack` stores a tensor: "int8-rows", "fp16" or "fp32"."""
    if not tensor.is_floating_point() or tensor.dim() < 2:
        return "fp32"
    return "int8-rows" if name.endswith(INT8_SUFFIX) and tensor.dim() == 2 else "fp16"


def pack(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An fp32 state dict packed as the module docstring says."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        how = packing_of_tensor(name, tensor)
        if how == "fp32":
            out[name] = tensor
        elif how == "fp16":
            out[name] = tensor.to(torch.float16)
        else:
            tensor = tensor.to(torch.float32)
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
            out[name] = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
            continue
        scale = tensors.get(name + SCALE_SUFFIX)
        if scale is None or scale.shape != (tensor.shape[0],):
            raise ValueError(f"int8 tensor {name!r} without its per-row scales")
        out[name] = tensor.to(torch.float32) * scale.to(torch.float32)[:, None]
    return out


def save_packed(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` packed into the safetensors file ``path``."""
    from safetensors.torch import save_file

    save_file(pack(state), str(path), metadata={WEIGHTS_KEY: PACKED})


def packing_of(path: Path) -> str | None:
    """The packing named in a safetensors file's metadata (None: plain weights)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(WEIGHTS_KEY)


def load_packed(path: Path) -> dict[str, torch.Tensor]:
    """The fp32 state dict of a packed file (errors: safetensors' own, or ``ValueError``)."""
    from safetensors.torch import load_file

    return unpack(load_file(str(path)))
