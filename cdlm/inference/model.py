"""The cdlm model object: taggers (a head per domain) + the LLM router + the reasoning stages.

    from cdlm import CDLM
    m = CDLM.from_pretrained("default")          # or a folder: save_pretrained / cdlm train
    m.predict("Angela Merkel met Emmanuel Macron in Paris.")
    # [{'start': 0, 'end': 13, 'text': 'Angela Merkel', 'label': 'person', 'score': 0.98,
    #   'source': 'tagger'}, ...]

Conventions, as Hugging Face pipelines and GLiNER users expect them:

- ``predict(str)`` gives a list of entity dicts, ``predict(list)`` a list of such lists; an
  entity is ``{start, end, text, label, score, source}`` with ``text == input[start:end]``
  (character offsets; ``source`` is ``tagger`` or ``llm``).
- ``predict_entities(text, labels, threshold)`` is GLiNER's call.
- ``stream(texts_or_records)`` is the generator for corpora: constant memory, one output record
  ``{..., "text", "entities", "routing"}`` per input, in order, other input fields kept.
- ``stream_tokens`` / ``predict_tokens`` take pre-tokenised sentences (BIO files) through the
  same steps; ``tagged_tokens`` + ``reason`` are those steps apart, for evaluation, which tags a
  subset once and reasons over it several times (calibration, routed, naive).
- ``from_pretrained`` / ``save_pretrained`` as in Hugging Face.

Which model: ``"default"`` is the model shipped inside the package (``cdlm/shipped/default``,
packed weights: :mod:`cdlm.model.packing`); another bare name is ``<cdlm home>/models/<name>``
(:func:`cdlm.runs.model_dir`; ``cdlm model build-default`` builds ``default-build``); anything
else a folder: one written by :meth:`CDLM.save_pretrained` or a ``cdlm train`` run (one domain).

The LLM: with ``llm=...`` the router picks the *hard* candidates of each text (``route="hard"``,
the rule of ``routing.*``; ``"all"`` forces every candidate, ``"none"`` none) and the stages
decide those; every record says how many candidates there were, how many were routed and by
which rule. The tagger's answer stands for everything else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdlm.config import ROUTES, CdlmConfig, LLMConfig, Route, llm_run_config, load_config
from cdlm.data.spans import Entity, label_types, span_tags
from cdlm.errors import ConfigError, DataError, ModelNotFoundError
from cdlm.inference.tagging import TaggedText, check_types, tag_texts, tag_tokens
from cdlm.llm.usage import UsageLog
from cdlm.reasoning import pipeline
from cdlm.reasoning.pipeline import Outcome
from cdlm.reasoning.routing import Router
from cdlm.reasoning.stage import Task
from cdlm.runs import DEFAULT_MODEL, model_dir, shipped_dir

if TYPE_CHECKING:
    from cdlm.llm.base import LLMBackend
    from cdlm.model.bundle import TaggerBundle
    from cdlm.model.tagger import Tagger
    from cdlm.reasoning.candidates import Candidate, Doc

# What `llm=` takes: a backend name, an LLMConfig, a ready backend object, or a reasoning Task.
LLMSpec = str | LLMConfig | Task | Any | None
Item = str | dict[str, Any]
Tokens = Sequence[str] | dict[str, Any]  # a token list, or a record with a "tokens" field


def runtime_config(config: CdlmConfig | Path | str | None) -> CdlmConfig:
    """The settings for routing, reasoning and the LLM: a config, a TOML path or the defaults."""
    if isinstance(config, CdlmConfig):
        return config
    return load_config(Path(config) if config is not None else None)


def resolve_path(name_or_path: Path | str) -> Path:
    """A folder as given; ``"default"``: the model shipped in the package; another bare name:
    the user's models folder (``default-build`` is what ``cdlm model build-default`` built)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name == DEFAULT_MODEL:
        folder = shipped_dir()
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"{folder}: the shipped default model is missing; reinstall cdlm, or build it "
                "with `cdlm model build-default` and pass --checkpoint default-build"
            )
        return folder
    if "/" not in name and "\\" not in name and not name.startswith("."):
        folder = model_dir(name)
        if (folder / "config.json").is_file():
            return folder
    raise ModelNotFoundError(
        f"no model at {path} (not a folder, nor a model name in {model_dir().parent}); "
        "use 'default' (shipped), build one with `cdlm model build-default` or train one with "
        "`cdlm train`"
    )


class CDLM:
    """A cdlm model: a tagger per domain (one shared encoder), the router and the LLM stages.

    Build it with :meth:`from_pretrained` (or :meth:`from_tagger` around a tagger in memory).
    ``config`` holds the routing, reasoning and LLM settings used at prediction time.
    """

    def __init__(
        self,
        model: TaggerBundle | Tagger,
        *,
        config: CdlmConfig | Path | str | None = None,
        path: Path | None = None,
    ) -> None:
        from cdlm.model.bundle import TaggerBundle

        self.config = runtime_config(config)
        self.path = path
        self.usage = UsageLog()  # what the LLM calls of this object cost, per stage
        self._model = model
        self._bundle = model if isinstance(model, TaggerBundle) else None
        self._tasks: dict[tuple[Any, ...], Task] = {}
        self._backends: dict[Any, LLMBackend] = {}
        if isinstance(model, TaggerBundle):
            self._heads = {name: head.data for name, head in model.specs.items()}
            self._default = model.default
        else:
            from cdlm.data.registry import domain_name

            target = model.config.train.target or "custom"
            self._heads = {domain_name(target): target}
            self._default = domain_name(target)

    def __repr__(self) -> str:
        where = f"'{self.path}'" if self.path else "in memory"
        return f"CDLM({where}, domains={self.domains}, default_domain='{self._default}')"

    # --- loading and saving -----------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: Path | str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        config: CdlmConfig | Path | str | None = None,
        quantize: str | None = None,
    ) -> CDLM:
        """``"default"`` (the default model in the user's cdlm home), another model name there,
        or a folder written by :meth:`save_pretrained` or by ``cdlm train``. ``quantize="int8"``
        runs the encoder as int8 ONNX for faster CPU inference
        (:mod:`cdlm.model.quantize`; measured in ``evals/bench_corpus.py``)."""
        from cdlm.model.bundle import BUNDLE_FORMAT, TaggerBundle
        from cdlm.model.quantize import check_quantize
        from cdlm.model.tagger import CHECKPOINT_FORMAT, Tagger

        mode = check_quantize(quantize)  # a bad value fails before the load
        path = resolve_path(name_or_path)
        meta = Tagger.read_meta(path, formats=(CHECKPOINT_FORMAT, BUNDLE_FORMAT))
        model: TaggerBundle | Tagger
        if meta["format"] == BUNDLE_FORMAT:
            model = TaggerBundle.load(path, device)
        else:
            model = Tagger.load(path, device)
        m = cls(model, config=config, path=path)
        if mode != "none":  # the user's [quantize] settings: a runtime choice, not the model's
            from cdlm.model.quantize import quantize_encoder

            quantize_encoder(model, mode, m.config.quantize)
        return m

    @classmethod
    def from_tagger(cls, tagger: Tagger, *, config: CdlmConfig | Path | str | None = None) -> CDLM:
        """Wrap a tagger already in memory (one domain, its training target)."""
        return cls(tagger, config=config)

    def save_pretrained(self, directory: Path | str) -> Path:
        """Write the model to ``directory``; :meth:`from_pretrained` reads it back."""
        from cdlm.model.quantize import is_quantized

        if is_quantized(self._model):
            raise ConfigError(
                "a quantized model cannot be saved; save the fp32 model and pass quantize='int8' "
                "to from_pretrained"
            )
        return self._model.save(directory)

    # --- what the model knows ---------------------------------------------------------------

    @property
    def domains(self) -> list[str]:
        """The domains this model has a head for (``--domain`` choices)."""
        return list(self._heads)

    @property
    def default_domain(self) -> str:
        return self._default

    def resolve(self, domain: str | None) -> str:
        """A head name from a head name or its data domain (``conll2003`` is ``news``)."""
        if domain is None:
            return self._default
        if domain in self._heads:
            return domain
        for name, data in self._heads.items():
            if domain == data:
                return name
        raise ConfigError(f"unknown domain {domain!r}: this model has {', '.join(self._heads)}")

    def data_domain(self, domain: str | None = None) -> str:
        """The data a head was trained on (a CrossNER name or a dataset folder)."""
        return self._heads[self.resolve(domain)]

    def tagger(self, domain: str | None = None) -> Tagger:
        """The tagger of one domain (a view sharing the encoder, for a multi-domain model)."""
        name = self.resolve(domain)
        if self._bundle is not None:
            return self._bundle.tagger(name)
        return self._model  # type: ignore[return-value]

    def labels(self, domain: str | None = None) -> list[str]:
        """The entity types of a domain (``person``, ``politician``, ...), not its BIO tags."""
        return label_types(self.tagger(domain).labels)

    def tag_tokens(
        self, token_lists: Sequence[Sequence[str]], domain: str | None = None
    ) -> list[list[str]]:
        """IOB2 tags for pre-tokenised sentences (evaluation on BIO files); no LLM."""
        return self.tagger(domain).predict_tags([list(t) for t in token_lists])

    def tagged_tokens(
        self,
        token_lists: Sequence[Sequence[str]],
        domain: str | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> list[TaggedText]:
        """The tagging step of :meth:`stream_tokens` alone (probabilities, tags, candidates), for
        :meth:`reason`: evaluation tags a subset once and reasons over it several times."""
        call = self._call(domain, labels=labels)
        pad = self.config.predict.max_padding
        return tag_tokens(call.tagger, token_lists, call.types, max_padding=pad)

    # --- prediction -------------------------------------------------------------------------

    def predict(
        self,
        texts: str | Sequence[str],
        domain: str | None = None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        batch_size: int = 32,
        explain: bool = False,
        route: Route | Router | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Entities of one text (a list of dicts) or of each text (a list of lists).

        ``domain``: which head (default: the model's default domain, see :attr:`domains`).
        ``threshold``: drop tagger entities scored below it (LLM decisions are kept).
        ``llm``: ``None`` (tagger alone), ``"llama"`` (llama.cpp, embedded SmolLM2 unless
        ``llm.model`` says otherwise), ``"gpt"`` (OpenAI-compatible), an :class:`LLMConfig`, a
        backend object, or a reasoning ``Task`` (used as it is, with its usage log).
        ``route``: ``"hard"`` (default with an LLM: the ``routing.*`` rule), ``"all"`` or
        ``"none"`` (or a :class:`Router`, its rule). ``explain``: each LLM entity's causal
        links, votes and self-check. ``labels``: decode only these types (see
        :meth:`predict_entities`).
        """
        single = isinstance(texts, str)
        records = self.stream(
            [texts] if single else texts,
            domain=domain,
            threshold=threshold,
            llm=llm,
            batch_size=batch_size,
            explain=explain,
            route=route,
            labels=labels,
        )
        out = [r["entities"] for r in records]
        return out[0] if single else out

    def predict_entities(
        self,
        text: str,
        labels: Sequence[str] | None = None,
        threshold: float = 0.5,
        *,
        domain: str | None = None,
        llm: LLMSpec = None,
    ) -> list[dict[str, Any]]:
        """GLiNER's call: the entities of ``text`` whose type is in ``labels`` and whose score
        is at least ``threshold``.

        ``labels`` restricts the decoding to those types of the chosen domain (a span the
        tagger read as another type gets the best listed type, or none); ``None`` keeps all.
        The model has a fixed set of types per domain (:meth:`labels`), so an unknown label
        is an error (:class:`cdlm.errors.ConfigError` naming it and the domain's types), not
        silently nothing.
        """
        out = self.predict(text, domain=domain, threshold=threshold, llm=llm, labels=labels)
        return out  # type: ignore[return-value]

    def predict_tokens(
        self,
        token_lists: Sequence[Sequence[str]],
        domain: str | None = None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        batch_size: int = 32,
        explain: bool = False,
        route: Route | Router | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """:meth:`predict` for pre-tokenised sentences: the entities of each, with offsets into
        its tokens joined by single spaces (see :meth:`stream_tokens`)."""
        records = self.stream_tokens(
            token_lists, domain, threshold, llm, batch_size, explain, route, labels=labels
        )
        return [r["entities"] for r in records]

    def stream(
        self,
        items: Iterable[Item],
        domain: str | None = None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        batch_size: int = 32,
        explain: bool = False,
        route: Route | Router | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One output record per input, in order, reading ``items`` ``batch_size`` at a time
        (constant memory on any stream).

        An item is a text or a record with a ``"text"`` field (e.g. a JSON Lines row); a
        record keeps its other fields (``id`` ...). Output: ``{**record, "text", "entities",
        "routing": {"candidates", "routed", "rule", "forced"}}``, plus ``"llm"`` (what the
        sentence cost, the trace) with ``explain`` and an LLM. Arguments as in :meth:`predict`.
        """
        call = self._call(domain, threshold, llm, explain, route, labels, batch_size)
        # The checks above run now; the records come as the caller reads them.
        return self._stream(iter(items), batch_size, call, tokens=False)

    def stream_tokens(
        self,
        sentences: Iterable[Tokens],
        domain: str | None = None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        batch_size: int = 32,
        explain: bool = False,
        route: Route | Router | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """:meth:`stream` for pre-tokenised sentences (BIO files): an item is a token list or a
        record with a ``"tokens"`` field. The record's ``text`` is the tokens joined by single
        spaces and the entity offsets point into it; every step after tokenising is the text
        path's (tagging, candidates, routing, reasoning, the record)."""
        call = self._call(domain, threshold, llm, explain, route, labels, batch_size)
        return self._stream(iter(sentences), batch_size, call, tokens=True)

    def reason(
        self,
        tagged: Sequence[TaggedText],
        domain: str | None = None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        explain: bool = False,
        route: Route | Router | None = None,
        *,
        labels: Sequence[str] | None = None,
    ) -> Iterator[Reasoned]:
        """The steps of :meth:`stream_tokens` after tagging (:meth:`tagged_tokens`), over
        ``tagged`` as one batch (a ``routing.budget`` counts over all of it): evaluation reasons
        over one tagged subset several times and scores what each :class:`Reasoned` keeps.
        Arguments as in :meth:`predict`; ``route`` may also be a :class:`Router`."""
        call = self._call(domain, threshold, llm, explain, route, labels)
        return self._reasoned(list(tagged), list(tagged), call)

    def _call(
        self,
        domain: str | None,
        threshold: float | None = None,
        llm: LLMSpec = None,
        explain: bool = False,
        route: Route | Router | None = None,
        labels: Sequence[str] | None = None,
        batch_size: int = 1,
    ) -> _Call:
        """The checked settings of a call: a bad value fails before the first record."""
        if batch_size < 1:
            raise ConfigError(f"batch_size: expected at least 1, got {batch_size}")
        name = self.resolve(domain)
        tagger = self.tagger(name)
        types = list(labels) if labels is not None else None
        if types is not None:
            check_types(types, tagger.labels, name)
        task = self._task(llm, name, types or label_types(tagger.labels), explain)
        router, rule, forced = self._router(route, task)
        return _Call(tagger, types, task, router, rule, forced, threshold, explain)

    def _stream(
        self, items: Iterator[Any], batch_size: int, call: _Call, tokens: bool
    ) -> Iterator[dict[str, Any]]:
        position, pad = 0, self.config.predict.max_padding
        while chunk := list(itertools.islice(items, batch_size)):
            if tokens:
                words = [_tokens_of(item, position + k) for k, item in enumerate(chunk)]
                tagged = tag_tokens(call.tagger, words, call.types, max_padding=pad)
            else:
                texts = [_text_of(item, position + k) for k, item in enumerate(chunk)]
                tagged = tag_texts(call.tagger, texts, call.types, max_padding=pad)
            position += len(chunk)
            yield from (r.record for r in self._reasoned(chunk, tagged, call))

    def _reasoned(
        self, items: Sequence[Any], tagged: Sequence[TaggedText], call: _Call
    ) -> Iterator[Reasoned]:
        """Candidates, routing, reasoning and the record of one batch of tagged texts."""
        r = self.config.reasoning
        cands = [t.candidates(r.top_k, r.missed_o_max) for t in tagged]
        hard = call.router.select(cands) if call.router is not None else [[] for _ in cands]
        # The routed sentences of a batch go to the LLM side by side (``llm.concurrency``).
        batch = [(t.doc, c, h) for t, c, h in zip(tagged, cands, hard, strict=True)]
        outcomes = pipeline.route_many(call.task, batch)
        for item, t, c, h, outcome in zip(items, tagged, cands, hard, outcomes, strict=True):
            kept = [
                e
                for e in outcome.entities
                if call.threshold is None or e.source != "tagger" or e.score >= call.threshold
            ]
            routing = {
                "candidates": len(c),
                "routed": len(h),
                "rule": call.rule,
                "forced": call.forced,
            }
            llm = outcome if call.task is not None else None
            record = output_record(item, t.doc, kept, routing, llm, call.explain)
            yield Reasoned(t, c, h, outcome, kept, record)

    # --- the LLM side -----------------------------------------------------------------------

    def _router(
        self, route: Route | Router | None, task: Task | None
    ) -> tuple[Router | None, str, bool]:
        """The router of a call, its rule in words, and whether the user forced it."""
        if isinstance(route, Router):  # a rule of the caller's (evaluation's calibrated one)
            if task is None:
                raise ConfigError("route: a Router needs an LLM (llm='llama' or 'gpt')")
            return route, route.rule(), False
        if route is not None and route not in ROUTES:
            raise ConfigError(f"route: expected one of {', '.join(ROUTES)}, got {route!r}")
        if task is None:
            if route in ("hard", "all"):
                raise ConfigError(f"route={route!r} needs an LLM (llm='llama' or 'gpt')")
            return None, "no LLM", route == "none"
        if route == "all":
            return Router.everything(), "every candidate (route=all)", True
        if route == "none":
            return None, "no candidate (route=none)", True
        router = Router.from_config(self.config.routing)
        return router, router.rule(), False

    def _task(
        self, llm: LLMSpec, domain: str, types: list[str], explain: bool = False
    ) -> Task | None:
        """The reasoning task for ``llm`` on a domain (``None`` without an LLM); backends and
        tasks are built once per object (loading a GGUF takes seconds). ``explain`` asks the
        stages for their reasons (``reasoning.reasons = "explain"``)."""
        from cdlm.reasoning.stages import make_task

        if llm is None or llm == "none":
            return None
        if isinstance(llm, Task):  # used as it is: its backend, prompts, types and usage log
            return llm
        backend: LLMBackend | None = None
        if isinstance(llm, str):
            cfg, key = llm_run_config(self.config, llm), llm
        elif isinstance(llm, LLMConfig):
            cfg = self.config.model_copy(update={"llm": llm})
            key = llm.model_dump_json()
        elif callable(getattr(llm, "complete", None)):
            backend = llm
            name = getattr(llm, "name", "llama")
            cfg = llm_run_config(self.config, name if name in ("llama", "gpt") else "llama")
            key = id(llm)
        else:
            raise ConfigError(
                f"llm: expected None, 'llama', 'gpt', an LLMConfig or a backend, got {llm!r}"
            )
        task_key = (key, domain, tuple(types), explain)
        if task_key not in self._tasks:
            backend = backend or self._backends.get(key)
            task = make_task(
                cfg, self.data_domain(domain), types, log=self.usage, backend=backend,
                explain=explain,
            )  # fmt: skip
            self._backends[key] = task.backend
            self._tasks[task_key] = task
        return self._tasks[task_key]


@dataclass
class Reasoned:
    """One input after tagging, routing and reasoning, with its output record; evaluation
    scores the word tags and counts the candidates asked and the decisions changed."""

    tagged: TaggedText
    candidates: list[Candidate]
    hard: list[Candidate]  # the candidates routed to the LLM (none: not routed)
    outcome: Outcome
    entities: list[Entity]  # the output's (a threshold drops low tagger entities)
    record: dict[str, Any]

    @property
    def tags(self) -> list[str]:
        """The output entities as IOB2 tags, one per token (what BIO scoring compares)."""
        spans = [(e.word_start, e.word_end, e.label) for e in self.entities]
        return span_tags(len(self.tagged.tokens), spans)


@dataclass(frozen=True)
class _Call:
    """The settings of one ``stream`` call, checked before the first record."""

    tagger: Tagger
    types: list[str] | None  # decode only these entity types (None = all)
    task: Task | None  # the LLM stages (None = tagger alone)
    router: Router | None  # None = nothing routed
    rule: str  # the routing rule in words, as records state it
    forced: bool  # route="all"/"none" given by the user
    threshold: float | None
    explain: bool


def _text_of(item: Item, index: int) -> str:
    """The text of a stream item (a string, or a record's ``text`` field)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        text = item.get("text")
        if isinstance(text, str):
            return text
        raise DataError(f"record {index + 1}: field 'text': expected a string, got {text!r:.60}")
    raise DataError(
        f"record {index + 1}: expected a text or a record with a 'text' field, "
        f"got {type(item).__name__}"
    )


def _tokens_of(item: Tokens, index: int) -> list[str]:
    """The tokens of a ``stream_tokens`` item (a token list, or a record's ``tokens`` field)."""
    words = item.get("tokens") if isinstance(item, dict) else item
    if isinstance(words, list | tuple) and all(isinstance(w, str) for w in words):
        return list(words)
    raise DataError(
        f"record {index + 1}: expected a list of tokens (strings) or a record with a 'tokens' "
        f"field, got {words!r:.60}"
    )


def output_record(
    item: Any,
    doc: Doc,
    entities: Sequence[Entity],
    routing: dict[str, Any],
    outcome: Outcome | None,
    explain: bool,
) -> dict[str, Any]:
    """The one output record of a text, whichever path made it (``stream``, ``stream_tokens``,
    evaluation, LLM-only mode): the item's other fields, ``text``, ``entities`` (offsets into
    ``text``), ``routing``, and with ``explain`` and an LLM (``outcome``) what it did."""
    for e in entities:  # every span lies inside the input, by construction
        assert doc.text[e.start : e.end] == e.text
    record = dict(item) if isinstance(item, dict) else {}
    record["text"] = doc.text
    record["entities"] = [e.to_json(explain) for e in entities]
    record["routing"] = routing
    if explain and outcome is not None:
        record["llm"] = llm_record(outcome)
    return record


def llm_record(outcome: Outcome) -> dict[str, Any]:
    """What the LLM did for one text (``--explain``): routed?, asked, fallbacks, trace."""
    return {
        "routed": outcome.routed,
        "asked": outcome.asked,
        "fallbacks": outcome.fallbacks,
        "dropped_ungrounded": outcome.dropped,
        "trace": outcome.trace,
    }
