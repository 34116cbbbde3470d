"""``cdlm.predict(...)`` and ``cdlm predict --llm llama|gpt``: raw texts in, merged tagger + LLM
entities out.

``predict_texts`` is the user-facing, GLiNER-like call: the tagger alone
(:mod:`cdlm.inference.tagging`), or with an LLM :func:`predict_with_llm`. With a tagger, each text
is tagged once (:func:`cdlm.inference.tagging.tag_texts`), the router picks the hard candidates and
the LLM decides those; everything else keeps the tagger's answer. Without a tagger (LLM-only mode)
every text goes through discovery, which proposes the mentions; the types then come from
``prompts/labels/<domain>.toml``.

Each record is ``{"text", "entities": [{start, end, text, label, score, source}]}`` plus, with
``explain``, each LLM entity's causal links, votes and self-check verdict, and a ``"llm"`` entry
with what the sentence cost (fallbacks, dropped ungrounded spans).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdlm.config import CdlmConfig, check_llm_choice, llm_run_config
from cdlm.data.text import tokenize
from cdlm.errors import ConfigError
from cdlm.inference.tagging import load_tagger, optional_tagger, tag_texts, tagger_record
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Doc, extract_candidates
from cdlm.reasoning.pipeline import Outcome, reason, route
from cdlm.reasoning.routing import Router
from cdlm.reasoning.stages import load_prompts, make_task

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger


def _doc(text: str, tokens: list[Any]) -> Doc:
    return Doc(text, tuple(t.text for t in tokens), tuple((t.start, t.end) for t in tokens))


def _record(doc: Doc, outcome: Outcome, explain: bool) -> dict[str, Any]:
    for ent in outcome.entities:  # every span lies inside the input, by construction
        assert doc.text[ent.start : ent.end] == ent.text
    record: dict[str, Any] = {
        "text": doc.text,
        "entities": [e.to_json(explain) for e in outcome.entities],
    }
    if explain:
        record["llm"] = {
            "routed": outcome.routed,
            "asked": outcome.asked,
            "fallbacks": outcome.fallbacks,
            "dropped_ungrounded": outcome.dropped,
            "trace": outcome.trace,
        }
    return record


def llm_only_types(cfg: CdlmConfig, domain: str) -> list[str]:
    """The entity types of ``domain`` from its label file (LLM-only mode has no tagger labels)."""
    from cdlm.reasoning.templates import load_label_file

    prompts = load_prompts(cfg.reasoning.prompts_dir)
    path = prompts.directory / "labels" / f"{domain}.toml"
    types = list(load_label_file(path))
    if not types:
        raise ConfigError(
            f"{path}: no entity types for domain '{domain}' (LLM-only mode takes the types from "
            "this file; pass --domain with a file in prompts/labels/ or give --checkpoint)"
        )
    return types


def predict_with_llm(
    texts: list[str],
    cfg: CdlmConfig,
    *,
    model: Any | None,
    domain: str | None,
    explain: bool = False,
    log: UsageLog | None = None,
) -> Iterator[dict[str, Any]]:
    """One record per text, in order (a generator, so long inputs print as they go)."""
    log = log or UsageLog()
    if model is None:
        target = domain or "politics"
        task = make_task(cfg, target, llm_only_types(cfg, target), log=log)
        for text in texts:
            doc = _doc(text, tokenize(text))
            outcome = reason(task, doc, None) if doc.tokens else Outcome([])
            yield _record(doc, outcome, explain)
        return

    labels = list(model.labels)
    types = list(dict.fromkeys(lab[2:] for lab in labels if lab != "O"))
    task = make_task(cfg, domain or model.config.train.target, types, log=log)
    router = Router.from_config(cfg.routing)
    chunk = 64
    for k in range(0, len(texts), chunk):
        tagged = tag_texts(model, texts[k : k + chunk])
        docs = [_doc(t.text, t.tokens) for t in tagged]
        cands = [
            extract_candidates(
                d,
                t.probs,
                labels,
                tags=t.tags,
                top_k=cfg.reasoning.top_k,
                missed_o_max=cfg.reasoning.missed_o_max,
            )
            if d.tokens
            else []
            for d, t in zip(docs, tagged, strict=True)
        ]
        hard = router.select(cands)  # a budget applies per chunk of texts
        for doc, c, h in zip(docs, cands, hard, strict=True):
            yield _record(doc, route(task, doc, c, h), explain)


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
        return [tagger_record(t) for t in tag_texts(model, list(texts))]

    cfg = llm_run_config(config, llm, llm_model, base_url)
    if model is None:
        model = optional_tagger(checkpoint)
    return list(predict_with_llm(list(texts), cfg, model=model, domain=domain, explain=explain))
