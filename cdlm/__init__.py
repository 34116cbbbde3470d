"""cdlm: cross-domain NER with a label-graph + causal tagger and an LLM for the hard cases.

    from cdlm import CDLM
    CDLM.from_pretrained("default").predict("Angela Merkel met Emmanuel Macron in Paris.")

Nothing heavy is imported here: ``cdlm.CDLM`` and ``cdlm.predict`` import the inference layer on
first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdlm.config import CdlmConfig
    from cdlm.inference.model import CDLM
    from cdlm.model.tagger import Tagger

__version__ = "0.1.0"
__all__ = ["CDLM", "__version__", "predict"]


def __getattr__(name: str) -> Any:
    """``cdlm.CDLM`` loads the model layer when first asked for, not at ``import cdlm``."""
    if name == "CDLM":
        from cdlm.inference.model import CDLM

        return CDLM
    raise AttributeError(f"module 'cdlm' has no attribute {name!r}")


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
    """One record per text, ``[{"text", "entities": [{start, end, text, label, score, source}],
    "routing"}]``, from the default model unless ``checkpoint``/``model`` says otherwise; a
    thin function over :class:`cdlm.CDLM` (see :func:`cdlm.inference.predict.predict_texts`)."""
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
