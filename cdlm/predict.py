"""Raw text in, entities with character offsets out.

``tag_texts`` is the tagging step on its own (tokens with offsets, word-level probabilities,
decoded tags, entities) so the LLM reasoning stage can start from it; ``predict_texts`` is the
user-facing, GLiNER-like call (``cdlm.predict("...")``) and what ``cdlm predict`` prints.

Each input text is tagged as one sequence (long texts are windowed by the tagger, never cut).
An entity's ``score`` is the mean probability of the tags chosen for its words.
"""

from __future__ import annotations

import functools
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cdlm.config import check_llm_choice
from cdlm.data.text import Token, tokenize

if TYPE_CHECKING:
    from cdlm.config import CdlmConfig
    from cdlm.model.tagger import Tagger


@dataclass
class TaggedText:
    """One input text after tagging."""

    text: str
    tokens: list[Token]
    probs: np.ndarray  # [W, L] softmax over the tagger's labels
    tags: list[str]
    entities: list[dict[str, Any]]


def default_checkpoint() -> Path:
    """What ``cdlm train --target politics`` writes by default."""
    from cdlm.config import load_config
    from cdlm.train import default_out_dir

    return default_out_dir(load_config(None, {"train.target": "politics"}))


@functools.lru_cache(maxsize=2)
def _load(path: str) -> Tagger:
    from cdlm.model.tagger import Tagger

    return Tagger.load(path)


def load_tagger(checkpoint: Path | str | None = None) -> Tagger:
    """The tagger in ``checkpoint`` (default: the politics baseline); loaded once per process."""
    return _load(str(Path(checkpoint or default_checkpoint()).resolve()))


def optional_tagger(checkpoint: Path | str | None) -> Tagger | None:
    """The tagger at ``checkpoint``; without one, the default checkpoint if it was trained, else
    ``None`` (the LLM-only mode of ``--llm``)."""
    if checkpoint is not None:
        return load_tagger(checkpoint)
    path = default_checkpoint()
    return load_tagger(path) if (path / "config.json").is_file() else None


def entities_from(
    text: str, tokens: list[Token], probs: np.ndarray, tags: list[str], labels: list[str]
) -> list[dict[str, Any]]:
    """Entity dicts over the text: ``text[start:end]`` is the entity's text by construction."""
    from cdlm.model.decode import spans

    index = {label: i for i, label in enumerate(labels)}
    out = []
    for span in spans(tags):
        start, end = tokens[span.start].start, tokens[span.end - 1].end
        score = float(np.mean([probs[w, index[tags[w]]] for w in range(span.start, span.end)]))
        out.append(
            {
                "start": start,
                "end": end,
                "text": text[start:end],
                "label": span.label,
                "score": round(score, 4),
                "source": "tagger",
            }
        )
    return out


def tag_texts(model: Tagger, texts: list[str]) -> list[TaggedText]:
    """Tokenise, tag and decode every text; nothing is dropped (empty texts give no tokens)."""
    from cdlm.model.decode import decode

    token_lists = [tokenize(t) for t in texts]
    probs = model.predict_proba([[tok.text for tok in toks] for toks in token_lists])
    out = []
    for text, toks, p in zip(texts, token_lists, probs, strict=True):
        tags = decode(p, model.labels, model.config.tagger.decode)
        out.append(
            TaggedText(text, toks, p, tags, entities_from(text, toks, p, tags, model.labels))
        )
    return out


def predict_texts(
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
    """``[{"text": ..., "entities": [{start, end, text, label, score, source}]}]``, one per text.

    ``model`` (an already loaded tagger) takes precedence over ``checkpoint``. ``llm="llama"``
    or ``"gpt"`` adds the LLM reasoning on the hard candidates exactly as ``cdlm predict --llm``
    does (``llm_model``: GGUF path or API model name; ``config``: a config or TOML path for the
    reasoning, routing and LLM settings; ``explain``: causal links, votes and self-check). With
    an LLM and no tagger at all (no ``checkpoint``, ``model`` or default checkpoint) discovery
    proposes the spans (LLM-only mode, types from ``prompts/labels/<domain>.toml``).
    """
    check_llm_choice(llm)
    if isinstance(texts, str):
        texts = [texts]
    if llm == "none":
        model = model or load_tagger(checkpoint)
        return [{"text": t.text, "entities": t.entities} for t in tag_texts(model, list(texts))]

    from cdlm.config import llm_run_config
    from cdlm.reasoning.predict import predict_with_llm

    cfg = llm_run_config(config, llm, llm_model, base_url)
    if model is None:
        model = optional_tagger(checkpoint)
    return list(predict_with_llm(list(texts), cfg, model=model, domain=domain, explain=explain))


def conll_lines(tagged: TaggedText) -> list[str]:
    """``token<TAB>tag`` lines of one text (the ``--format conll`` output)."""
    return [f"{tok.text}\t{tag}" for tok, tag in zip(tagged.tokens, tagged.tags, strict=True)]


class _CallableModule(types.ModuleType):
    """Keeps ``cdlm.predict(...)`` working: importing this submodule makes Python bind the name
    ``cdlm.predict`` to the module, hiding the function of that name in ``cdlm/__init__.py``.
    Calling the module calls :func:`predict_texts`, so the call works whatever was imported."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return predict_texts(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
