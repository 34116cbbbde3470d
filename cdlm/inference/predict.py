"""``cdlm.predict(...)`` (records in, records out, over :class:`~cdlm.inference.model.CDLM`) and
the LLM-only mode.

``predict_texts`` is the function behind ``cdlm.predict``: it loads the model (the default one
unless ``checkpoint`` or ``model`` says otherwise) and returns one record per text,
``{"text", "entities", "routing"}``, exactly as :meth:`CDLM.stream` makes them.

LLM-only mode (``llm_only_records``, ``cdlm predict --checkpoint none --llm ...``) has no tagger:
discovery proposes the mentions, and the types come from the domain's label file
(``cdlm/prompts/labels/<domain>.toml`` or ``--labels FILE.toml``) or its data. It is
only used when asked for by name; a missing model is an error, never a silent switch to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdlm.config import CdlmConfig, check_llm_choice, llm_run_config
from cdlm.data.spans import label_types
from cdlm.data.text import tokenize
from cdlm.errors import ConfigError
from cdlm.inference.model import CDLM, output_record
from cdlm.inference.tagging import doc_of
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.pipeline import Outcome, reason
from cdlm.reasoning.stages import load_prompts, make_task

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


def llm_only_types(cfg: CdlmConfig, domain: str) -> list[str]:
    """The entity types of ``domain`` in LLM-only mode (no tagger labels): from its label file
    (``--labels`` or labels/<domain>.toml), else from the domain's label set (a CrossNER name or
    a BIO folder) with empty descriptions (the stub)."""
    from cdlm.data.registry import domain_labels
    from cdlm.errors import DataError
    from cdlm.reasoning.templates import load_label_file

    path = load_prompts(cfg.reasoning.prompts_dir, cfg.reasoning.labels_file).label_path(domain)
    types = list(load_label_file(path))
    if types:
        return types
    try:
        labels = domain_labels(domain)
    except DataError:
        raise ConfigError(
            f"{path}: no entity types for domain '{domain}': LLM-only mode takes them from a "
            "label file (--labels FILE.toml) or the domain's data; or give --checkpoint"
        ) from None
    return label_types(labels)


def llm_only_records(
    texts: Iterable[str],
    cfg: CdlmConfig,
    domain: str | None,
    explain: bool = False,
    log: UsageLog | None = None,
) -> Iterator[dict[str, Any]]:
    """LLM-only mode: one record per text, in order; discovery proposes every candidate."""
    target = domain or "politics"
    task = make_task(
        cfg, target, llm_only_types(cfg, target), log=log or UsageLog(), explain=explain
    )
    docs = [doc_of(text, tokenize(text)) for text in texts]
    # Independent texts go to the LLM side by side, up to ``llm.concurrency``.
    outcomes = task.map(lambda d: reason(task, d, None) if d.tokens else Outcome([]), docs)
    for doc, outcome in zip(docs, outcomes, strict=True):
        routing = {
            "candidates": outcome.asked,
            "routed": outcome.asked,
            "rule": "LLM-only mode: discovery proposes every candidate",
            "forced": True,
        }
        yield output_record(doc.text, doc, outcome.entities, routing, outcome, explain)


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
