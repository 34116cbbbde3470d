"""int8: the encoder's linear layers quantized in place, predictions close to fp32, and a
quantized model refuses to be saved (its weights are no longer the checkpoint's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from cdlm.errors import ConfigError
from cdlm.inference.model import CDLM
from cdlm.model.quantize import is_quantized

SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget .",
    "The SPD won the 2017 election in Lower Saxony , said Stephan Weil .",
]
WORDS = [s.split(" ") for s in SENTENCES]


def test_int8_quantizes_the_encoder_and_stays_close(tiny_checkpoint: Path, tmp_path: Path):
    fp32 = CDLM.from_pretrained(tiny_checkpoint)
    int8 = CDLM.from_pretrained(tiny_checkpoint, quantize="int8")
    t32, t8 = fp32.tagger(), int8.tagger()
    assert not is_quantized(t32.encoder) and is_quantized(t8.encoder)
    assert not any(isinstance(m, nn.Linear) for m in t8.encoder.modules())
    assert type(t8.head) is nn.Linear  # the head and casing features stay fp32
    p32, p8 = t32.predict_proba(WORDS), t8.predict_proba(WORDS)
    for a, b in zip(p32, p8, strict=True):
        assert np.abs(a - b).max() < 0.15
        # Where fp32 has a clear winner (a lead of 0.15 or more, more than int8 can move a
        # probability), int8 picks it too; near-ties of the tiny model may flip.
        top2 = np.sort(a, axis=-1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] >= 0.15
        assert clear.sum() >= len(a) // 2
        assert (a.argmax(-1) == b.argmax(-1))[clear].all()
    with pytest.raises(ConfigError, match="a quantized model cannot be saved"):
        int8.save_pretrained(tmp_path / "q")


def test_unknown_mode_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="quantize: expected one of none, int8, got 'int4'"):
        CDLM.from_pretrained(tmp_path / "no-model-here", quantize="int4")
