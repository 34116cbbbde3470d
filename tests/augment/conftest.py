"""Fixtures for the FactMix tests: the synthetic politics sentences (tests/synthetic.py, no
data needed) and a real fill-mask pipeline.

The MLM is the embedded MiniLM encoder with a masked-LM head (decoder tied to its word
embeddings, transform layer freshly initialised under a fixed torch seed): a genuine Hugging Face
fill-mask model that exercises :class:`HFMaskFiller` offline. Its words are poor, which does not
matter for what these tests check (positions, labels, ratios, determinism).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.data.bio import Sentence, read_bio


@pytest.fixture(scope="session")
def politics_train(small_crossner: Path) -> list[Sentence]:
    return read_bio(small_crossner / "politics" / "train.txt")


@pytest.fixture(scope="session")
def minilm_mlm(encoder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    model = BertForMaskedLM.from_pretrained(str(encoder_path))
    out = tmp_path_factory.mktemp("minilm_mlm")
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(encoder_path)).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def mlm_filler(minilm_mlm: Path):
    from cdlm.augment.context import HFMaskFiller

    return HFMaskFiller(str(minilm_mlm), top_k=5)
