"""cdlm: cross-domain NER with a label-graph + causal tagger and an LLM for the hard cases.

Nothing heavy is imported here; ``cdlm.predict`` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "predict"]


def predict(*args: Any, **kwargs: Any) -> Any:
    """GLiNER-style entry point: see :func:`cdlm.predict.predict_texts`."""
    from cdlm.predict import predict_texts

    return predict_texts(*args, **kwargs)
