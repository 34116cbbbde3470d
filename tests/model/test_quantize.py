"""int8: the encoder exported to ONNX and quantized, run by ONNX Runtime; predictions close to
fp32, the export cached per encoder weights, and a quantized model refuses to be saved or trained
(its encoder is no longer the checkpoint's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cdlm.config import QuantizeConfig
from cdlm.errors import ConfigError
from cdlm.inference.model import CDLM
from cdlm.model import quantize
from cdlm.model.quantize import OnnxEncoder, is_quantized

SENTENCES = [
    "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget .",
    "The SPD won the 2017 election in Lower Saxony , said Stephan Weil .",
]
WORDS = [s.split(" ") for s in SENTENCES]


def test_int8_runs_the_encoder_in_onnx_runtime_and_stays_close(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    exports: list[Path] = []
    real_export = quantize.export_onnx

    def counted(encoder, path, opset):
        exports.append(path)
        return real_export(encoder, path, opset)

    monkeypatch.setattr(quantize, "export_onnx", counted)
    fp32 = CDLM.from_pretrained(tiny_checkpoint)
    int8 = CDLM.from_pretrained(tiny_checkpoint, quantize="int8")
    t32, t8 = fp32.tagger(), int8.tagger()
    assert not is_quantized(t32) and is_quantized(t8) and isinstance(t8.encoder, OnnxEncoder)
    assert type(t8.head) is nn.Linear  # the head and casing features stay fp32 torch
    assert t8.encoder.model_file.name == "encoder.int8.onnx" and len(exports) == 1
    p32, p8 = t32.predict_proba(WORDS), t8.predict_proba(WORDS)
    for a, b in zip(p32, p8, strict=True):
        assert np.abs(a - b).max() < 0.15
        # Where fp32 has a clear winner (a lead of 0.15 or more, more than int8 can move a
        # probability), int8 picks it too; near-ties of the tiny model may flip.
        top2 = np.sort(a, axis=-1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] >= 0.15
        assert clear.sum() >= len(a) // 2
        assert (a.argmax(-1) == b.argmax(-1))[clear].all()
    # The same weights load from the cache: no second export.
    again = CDLM.from_pretrained(tiny_checkpoint, quantize="int8")
    assert is_quantized(again.tagger()) and len(exports) == 1
    with pytest.raises(ConfigError, match="a quantized model cannot be saved"):
        int8.save_pretrained(tmp_path / "q")
    with pytest.raises(ConfigError, match="runs inference only"):
        t8.train()


def test_the_onnx_export_computes_what_the_encoder_does(tmp_path: Path) -> None:
    """fp32 export against torch on padded batches of another shape than the export's example
    (batch and length are dynamic; the padding mask is honoured)."""
    from cdlm.model.encoder import load_pretrained

    encoder, tokenizer = load_pretrained(None)
    encoder.eval()
    path = tmp_path / "e.onnx"
    quantize.export_onnx(encoder, path, QuantizeConfig().opset)
    onnx = OnnxEncoder(path, encoder.config, threads=1)
    enc = tokenizer(
        ["Short one .", "A longer sentence about the European Parliament and Angela Merkel ."] * 3,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        want = encoder(**enc).last_hidden_state
    got = onnx(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    real = enc["attention_mask"].bool()
    assert got.shape == want.shape and enc["input_ids"].shape[0] == 6
    assert (got - want)[real].abs().max() < 1e-4


def test_unknown_mode_fails_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="quantize: expected one of none, int8, got 'int4'"):
        CDLM.from_pretrained(tmp_path / "no-model-here", quantize="int4")
