"""``cdlm.predict(...)`` (records in, records out, over :class:`~cdlm.inference.model.CDLM`) and
the LLM-only mode.

``predict_texts`` is the function behind ``cdlm.predict``: it loads the model (the default one
unless ``checkpoint`` or ``model`` says otherwise) and returns one record per text,
``{"text", "entities", "routing"}``, exactly as :meth:`CDLM.stream` makes them.

LLM-only mode (``llm_only_records``, ``cdlm predict --checkpoint none --llm ...``) has no tagger:
discovery proposes the mentions, and the types come from ``prompts/labels/<domain>.toml``. It is
only used when asked for by name; a missing model is an error, never a silent switch to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdlm.config import CdlmConfig, check_llm_choice, llm_run_config
from cdlm.data.text import tokenize
from cdlm.errors import ConfigError
from cdlm.inference.model import CDLM, llm_record
from cdlm.inference.tagging import doc_of
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.pipeline import Outcome, reason
from cdlm.reasoning.stages import load_prompts, make_task

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


def llm_only_types(cfg: CdlmConfig, domain: str) -> list[str]:
    """The entity types of ``domain`` from its label file (LLM-only mode has no tagger labels)."""
    from cdlm.reasoning.templates import load_label_file

    prompts = load_prompts(cfg.reasoning.prompts_dir)
    path = prompts.directory / "labels" / f"{domain}.toml"
    types = list(load_label_file(path))
    if not types:
        raise ConfigError(
            f"{path}: no entity types for domain '{domain}' (LLM-only mode takes the types from "
            "this file; pass --domain with a file in prompts/labels/)"
        )
    return types


def llm_only_records(
    texts: Iterable[str],
    cfg: CdlmConfig,
    domain: str | None,
    explain: bool = False,
    log: UsageLog | None = None,
) -> Iterator[dict[str, Any]]:
    """LLM-only mode: one record per text, in order; discovery proposes every candidate."""
    target = domain or "politics"
    task = make_task(cfg, target, llm_only_types(cfg, target), log=log or UsageLog())
    for text in texts:
        doc = doc_of(text, tokenize(text))
        outcome = reason(task, doc, None) if doc.tokens else Outcome([])
        for ent in outcome.entities:  # every span lies inside the input, by construction
            assert doc.text[ent.start : ent.end] == ent.text
        record: dict[str, Any] = {
            "text": text,
            "entities": [e.to_json(explain) for e in outcome.entities],
            "routing": {
                "candidates": outcome.asked,
                "routed": outcome.asked,
                "rule": "LLM-only mode: discovery proposes every candidate",
                "forced": True,
            },
        }
        if explain:
            record["llm"] = llm_record(outcome)
        yield record


def predict_with_llm(
    texts: list[str],
    cfg: CdlmConfig,
    *,
    model: Tagger | None,
    domain: str | None,
    explain: bool = False,
    log: UsageLog | None = None,
) -> Iterator[dict[str, Any]]:
    """Tagger + LLM records (``model``), or LLM-only mode when ``model`` is ``None``."""
    if model is None:
        yield from llm_only_records(texts, cfg, domain, explain, log)
        return
    m = CDLM.from_tagger(model, config=cfg)
    if log is not None:
        m.usage = log
    yield from m.stream(texts, llm=cfg.llm, explain=explain)


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
    """``[{"text", "entities": [{start, end, text, label, score, source}], "routing"}]``, one
    record per text.

    ``model`` (a tagger in memory) wins over ``checkpoint`` (a folder or model name; default:
    the default model). ``llm="llama"`` or ``"gpt"`` adds the LLM on the hard candidates as
    ``cdlm predict --llm`` does (``llm_model``: GGUF path or API model name; ``config``: a
    config or TOML path for the reasoning, routing and LLM settings; ``explain``: causal links,
    votes and self-check). For more (streams, thresholds, routing), use
    :class:`cdlm.CDLM` directly.
    """
    check_llm_choice(llm)
    if isinstance(texts, str):
        texts = [texts]
    cfg = llm_run_config(config, llm, llm_model, base_url)
    if model is not None:
        m = CDLM.from_tagger(model, config=cfg)
    else:
        m = CDLM.from_pretrained(checkpoint or "default", config=cfg)
    spec = cfg.llm if llm != "none" else None
    return list(m.stream(texts, domain=domain, llm=spec, explain=explain))
