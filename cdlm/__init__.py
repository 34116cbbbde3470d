"""cdlm: cross-domain NER with a label-graph + causal tagger and an LLM for the hard cases.

Nothing heavy is imported here: ``cdlm.predict`` imports the inference layer on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdlm.config import CdlmConfig
    from cdlm.model.tagger import Tagger

__version__ = "0.1.0"
__all__ = ["__version__", "predict"]


def predict(
    texts: str | list[str],
    checkpoint: Path | str | None = None,
    llm: str = "none",
    model: Tagger | None = None,
    *,
    llm_model: str | None = None,
    base_url: str | None = None,
    domain: str | None = None,
    explain: bool = False,
    config: CdlmConfig | Path | str | None = None,
) -> list[dict[str, Any]]:
    """GLiNER-style entry point, one record per text:
    ``[{"text": ..., "entities": [{start, end, text, label, score, source}]}]``.

    See :func:`cdlm.inference.predict.predict_texts` for the arguments."""
    from cdlm.inference.predict import predict_texts

    return predict_texts(
        texts,
        checkpoint,
        llm,
        model,
        llm_model=llm_model,
        base_url=base_url,
        domain=domain,
        explain=explain,
        config=config,
    )
