"""Int8-row packing of shipped weights: what is packed, how close it stays, and that a damaged
packed file is one line naming it (the shipped model's own test is tests/test_shipped_model.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from cdlm.errors import ModelNotFoundError
from cdlm.model.bundle import TaggerBundle
from cdlm.model.packing import (
    PACKED,
    SCALE_SUFFIX,
    WEIGHTS_KEY,
    pack,
    packing_of,
    save_packed,
    unpack,
)

WORDS = [["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", "."]]


@pytest.fixture(scope="module")
def packed_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_bundle`` with its weights packed, as ``cdlm model ship`` packs them."""
    out = tmp_path_factory.mktemp("packed") / "model"
    shutil.copytree(tiny_bundle, out)
    save_packed(TaggerBundle.load(tiny_bundle).state_dict(), out / "model.safetensors")
    return out


def test_embeddings_become_int8_rows_matrices_fp16_vectors_stay(tiny_bundle: Path) -> None:
    state = TaggerBundle.load(tiny_bundle).state_dict()
    packed = pack(state)
    back = unpack(packed)
    assert set(back) == set(state) and all(t.dtype == torch.float32 for t in back.values())
    (table,) = [n for n in state if n.endswith("word_embeddings.weight")]
    assert packed[table].dtype == torch.int8
    step = packed[table + SCALE_SUFFIX][:, None]
    assert torch.all((back[table] - state[table]).abs() <= step / 2 + 1e-7)
    halves = [n for n, t in packed.items() if t.dtype == torch.float16]
    assert any(n.startswith("heads.") for n in halves) and len(halves) > 20
    for name, tensor in state.items():
        if name in halves:
            assert torch.allclose(back[name], tensor, rtol=1e-3, atol=1e-4), name
        elif name != table:  # vectors (biases, LayerNorm) stay exact
            assert torch.equal(back[name], tensor.float()), name


def test_packed_weights_shrink_the_file_and_tag_alike(
    tiny_bundle: Path, packed_bundle: Path
) -> None:
    built, shipped = tiny_bundle / "model.safetensors", packed_bundle / "model.safetensors"
    assert packing_of(shipped) == PACKED and packing_of(built) is None
    assert shipped.stat().st_size < 0.45 * built.stat().st_size
    a = TaggerBundle.load(tiny_bundle).tagger("politics").predict_proba(WORDS)[0]
    b = TaggerBundle.load(packed_bundle).tagger("politics").predict_proba(WORDS)[0]
    assert np.abs(a - b).max() < 0.02  # probabilities, not just the argmax


def test_a_packed_tensor_without_its_scales_is_refused(packed_bundle: Path, tmp_path: Path) -> None:
    tensors = load_file(str(packed_bundle / "model.safetensors"))
    name = next(n for n in tensors if n.endswith(SCALE_SUFFIX))
    del tensors[name]
    with pytest.raises(ValueError, match="without its per-row scales"):
        unpack(tensors)
    broken = tmp_path / "model"
    shutil.copytree(packed_bundle, broken)
    save_file(tensors, str(broken / "model.safetensors"), metadata={WEIGHTS_KEY: PACKED})
    with pytest.raises(ModelNotFoundError, match=r"model\.safetensors: corrupt weights"):
        TaggerBundle.load(broken)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_damaged_shipped_weights_are_one_line(
    packed_bundle: Path, tmp_path: Path, damage: str
) -> None:
    """The CLI on a damaged copy of packed weights: one line naming the file and how to get
    the model back, exit 2, no traceback."""
    broken = tmp_path / "model"
    shutil.copytree(packed_bundle, broken)
    weights = broken / "model.safetensors"
    if damage == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.unlink()
    cmd = [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(broken), "Angela Merkel"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert str(weights) in res.stderr and "reinstall cdlm" in res.stderr
    assert "cdlm model build-default" in res.stderr
