"""int8 inference: the encoder exported to ONNX, its weights quantized to int8, run by ONNX Runtime.

The encoder holds nearly all of the tagger's weights and work. Its ``Linear`` weights are
quantized to int8 per output channel; activations are quantized on the fly, per batch, so no
calibration data is needed. ONNX Runtime fuses the attention and uses the CPU's int8 dot-product
instructions, which torch's eager dynamic quantization did not turn into speed on this project's
machines (1.01x fp32 and 2.16 F1 lost, ``evals/results/bench_corpus_pieces.md``). Everything else
(casing features, the head, fusion, decoding) stays fp32 in torch. It is for CPU inference only:
a quantized model cannot be trained or saved (``CDLM.save_pretrained`` refuses).

The export (about ten seconds) is cached per encoder weights under ``quantize.cache_dir`` (the
user cache by default), so corpus workers and later loads reuse it; a lock keeps two processes
from exporting the same encoder at once. Measured against fp32 (throughput and F1 on the
politics test set, same run) by ``evals/bench_corpus.py``. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from cdlm.config import QUANTIZE_CHOICES, QuantizeConfig, QuantizeMode, cache_home
from cdlm.errors import ConfigError

INSTALL_HINT = "pip install 'cdlm[onnx]' (onnxruntime, onnx, onnxscript)"


def check_quantize(mode: str | None) -> QuantizeMode:
    """``None``/``"none"`` or ``"int8"``; anything else is a one-line error."""
    if mode is None:
        return "none"
    if mode not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


class OnnxEncoder(nn.Module):
    """Stands in for the transformers encoder at inference: same call, same
    ``last_hidden_state``, computed by an ONNX Runtime session. ``config`` is the original's."""

    def __init__(self, model_file: Path, config: Any, threads: int) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.config = config
        self.model_file = model_file
        self.eval()

    def train(self, mode: bool = True) -> OnnxEncoder:
        if mode:
            raise ConfigError("a quantized encoder runs inference only; train the fp32 model")
        return super().train(False)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any
    ) -> SimpleNamespace:
        feed = {
            "input_ids": input_ids.cpu().numpy(),
            "attention_mask": attention_mask.cpu().numpy(),
        }
        (hidden,) = self.session.run(None, feed)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


class _Export(nn.Module):
    """The encoder as a function of (input_ids, attention_mask) -> last hidden state."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def weights_digest(encoder: nn.Module) -> str:
    """A name for the encoder's exact weights (the export cache key)."""
    h = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_int8(encoder: nn.Module, cfg: QuantizeConfig) -> Path:
    """The int8 ONNX file of ``encoder``: from the cache, or exported and quantized now."""
    try:
        from filelock import FileLock
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ConfigError(
            f"quantize int8 needs ONNX Runtime ({exc.name} missing): {INSTALL_HINT}"
        ) from None
    root = Path(cfg.cache_dir) if cfg.cache_dir else cache_home() / "onnx"
    folder = root / f"{weights_digest(encoder)}__opset{cfg.opset}__pc{int(cfg.per_channel)}"
    int8 = folder / "encoder.int8.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if int8.is_file():
            return int8
        fp32 = folder / "encoder.onnx"
        export_onnx(encoder, fp32, cfg.opset)
        tmp = folder / "encoder.int8.onnx.tmp"
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8, per_channel=cfg.per_channel)
        tmp.replace(int8)  # the int8 file appears whole or not at all
        fp32.unlink()
    return int8


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer advises "pre-processing" through the root logger on every call;
    the advice is for static quantization, not for what is done here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def export_onnx(encoder: nn.Module, path: Path, opset: int) -> None:
    """torch's dynamo exporter, batch and sequence length dynamic. (The older TorchScript
    exporter mis-traced the transformers attention mask: outputs off by more than 1.)"""
    example = {
        "input_ids": torch.ones(2, 8, dtype=torch.long),
        "attention_mask": torch.ones(2, 8, dtype=torch.long),
    }
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    shapes = {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}
    was_training = encoder.training
    encoder.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Export(encoder),
                (),
                str(path),
                kwargs=example,
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    finally:
        encoder.train(was_training)


def is_quantized(module: nn.Module) -> bool:
    """Whether ``module`` runs an int8 ONNX encoder."""
    return any(isinstance(m, OnnxEncoder) for m in module.modules())


def quantize_encoder(model: nn.Module, mode: str | None, cfg: QuantizeConfig | None = None) -> bool:
    """Swap ``model.encoder`` (and that of every tagger view sharing it) for its int8 ONNX
    version when ``mode`` is ``"int8"``; whether it is quantized now."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(f"quantize: {type(model).__name__} has no encoder to quantize")
    if check_quantize(mode) == "int8" and not isinstance(encoder, OnnxEncoder):
        cfg = cfg or QuantizeConfig()
        onnx = OnnxEncoder(export_int8(encoder, cfg), encoder.config, torch.get_num_threads())
        for module in [m for m in model.modules() if getattr(m, "encoder", None) is encoder]:
            module.encoder = onnx
        for view in getattr(model, "_views", {}).values():
            view.encoder = onnx
    return isinstance(model.encoder, OnnxEncoder)
