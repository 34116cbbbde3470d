"""The model side of a corpus run (:mod:`cdlm.inference.corpus`, :mod:`cdlm.inference.ray_engine`):
a *predictor* is a function ``records -> records`` built in each worker by a picklable factory
from a small :class:`PredictorSpec`; both engines use these, so they live below both."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from cdlm.config import LLMChoice, QuantizeMode, Route
from cdlm.data.corpus import Record

Predictor = Callable[[list[Record]], list[Record]]
PredictorFactory = Callable[[], Predictor]


class PredictorSpec(BaseModel):
    """What every worker loads and how it predicts: the arguments of
    :meth:`cdlm.CDLM.from_pretrained` and :meth:`cdlm.CDLM.stream` (small and picklable)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "default"
    domain: str | None = None
    threshold: float | None = None
    llm: LLMChoice = "none"
    route: Route | None = None
    explain: bool = False
    quantize: QuantizeMode = "none"
    batch_size: int = 32
    # The full CdlmConfig (routing, reasoning, LLM settings) as JSON data; None = defaults.
    config: dict[str, Any] | None = None


def load_predictor(spec: PredictorSpec) -> Predictor:
    """The model of ``spec``, loaded once, as a ``records -> records`` function."""
    from cdlm.config import CdlmConfig
    from cdlm.inference.model import CDLM

    config = CdlmConfig.model_validate(spec.config) if spec.config is not None else None
    model = CDLM.from_pretrained(spec.model, config=config, quantize=spec.quantize)
    llm = model.config.llm if spec.llm != "none" else None

    def predict(records: list[Record]) -> list[Record]:
        return list(
            model.stream(
                records,
                domain=spec.domain,
                threshold=spec.threshold,
                llm=llm,
                # The whole task at once: the tagger orders it by word pieces before batching
                # (``train.eval_batch_size`` per forward), so a task pads little.
                batch_size=max(spec.batch_size, len(records)),
                explain=spec.explain,
                route=spec.route,
            )
        )

    return predict


def predictor_factory(spec: PredictorSpec) -> PredictorFactory:
    """A picklable factory of :func:`load_predictor` for ``spec`` (what workers receive)."""
    return functools.partial(load_predictor, spec)


def set_threads(threads: int | None) -> None:
    """Torch intra-op threads of this process (``None`` keeps torch's default)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)


def encode(records: list[Record]) -> list[bytes]:
    """Output lines (UTF-8 JSON, one ``\\n`` each); done where the records are made."""
    return [_line(r) for r in records]


def _line(record: Record) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an error record): JSON's \ud800 escape
        return (json.dumps(record) + "\n").encode("ascii")
