"""``cdlm predict`` (texts, a file or stdin to stdout) and ``cdlm predict corpus`` (a corpus
file into resumable JSON Lines): thin layers over :class:`cdlm.CDLM` and
:mod:`cdlm.inference.corpus`."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.cli.dispatch import Alias, aliased, deprecated, option_words, plain_group, take_option
from cdlm.cli.options import (
    BaseUrlOption,
    ConfigOption,
    HeadOption,
    LabelsOption,
    LLMModelOption,
    ModelOption,
    SetOption,
    with_sets,
)
from cdlm.config import LLMChoice, QuantizeMode, Route

FormatChoice = Literal["jsonl", "conll"]
InputFormatChoice = Literal["auto", "text", "jsonl"]
EngineChoice = Literal["local", "ray"]


# Options that only set one config key: still read, as --set (with a note).
PREDICT_ALIASES = {
    "--prompts-dir": Alias("reasoning.prompts_dir", text=True),
    "--llm-budget": Alias("routing.budget"),
    "--llm-threshold": Alias("routing.threshold"),
}
CORPUS_ALIASES = {**PREDICT_ALIASES, "--ray-address": Alias("corpus.ray_address", text=True)}

TextArgument = Annotated[
    list[str] | None, typer.Argument(help="Texts to tag (one output line each).")
]
INPUT_HELP = (
    "File (or - for stdin): one text per line, or JSON Lines records with a 'text' field "
    "(.jsonl; other fields such as 'id' are kept). Read as a stream."
)
InputOption = Annotated[str | None, typer.Option("--input", "-i", help=INPUT_HELP)]
CorpusInputOption = Annotated[str, typer.Option("--input", "-i", help=INPUT_HELP)]
CorpusOutputOption = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        help="JSON Lines to write; an output this command wrote (a <output>.cdlm.json beside "
        "it) is resumed where it stopped; any other existing file, or the input itself, is "
        "refused.",
    ),
]
InputFormatOption = Annotated[
    InputFormatChoice,
    typer.Option(help="Input format; auto = jsonl for .jsonl/.ndjson files, else text."),
]
PredictModelOption = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="Model: 'default' (shipped with cdlm), 'default-build' (`cdlm model "
        "build-default`), a folder written by "
        "save_pretrained or `cdlm train`, or 'none' with --llm (LLM-only mode).",
    ),
]
FormatOption = Annotated[FormatChoice, typer.Option("--format", help="Output format.")]
ThresholdOption = Annotated[
    float | None, typer.Option(help="Drop tagger entities scored below this (0..1).")
]
LLMOption = Annotated[LLMChoice, typer.Option(help="LLM for the hard candidates.")]
RouteOption = Annotated[
    Route | None,
    typer.Option(
        help="With --llm: which candidates go to the LLM: hard (the routing.* rule, default), "
        "all, or none."
    ),
]
ExplainOption = Annotated[
    bool, typer.Option(help="With --llm: add causal links, votes and self-check verdicts.")
]
QuantizeOption = Annotated[
    QuantizeMode,
    typer.Option(help="int8: quantized encoder, faster on CPU (see evals/bench_corpus)."),
]
BatchSizeOption = Annotated[int, typer.Option(help="Texts per batch.", min=1)]
WorkersOption = Annotated[int, typer.Option(help="Processes (or Ray actors) predicting.", min=1)]
ThreadsOption = Annotated[
    int | None,
    typer.Option(help="torch threads per worker (default: 1 with --workers > 1).", min=1),
]
EngineOption = Annotated[
    EngineChoice, typer.Option(help="local processes, or Ray Data (pip install 'cdlm[ray]').")
]
OverwriteOption = Annotated[
    bool,
    typer.Option(help="Start afresh instead of resuming (only over a file this command wrote)."),
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar on stderr.")]


def predict(
    text: TextArgument = None,
    input: InputOption = None,
    input_format: InputFormatOption = "auto",
    checkpoint: PredictModelOption = "default",
    domain: HeadOption = None,
    format: FormatOption = "jsonl",
    threshold: ThresholdOption = None,
    llm: LLMOption = "none",
    route: RouteOption = None,
    explain: ExplainOption = False,
    labels: LabelsOption = None,
    model: LLMModelOption = None,
    base_url: BaseUrlOption = None,
    quantize: QuantizeOption = "none",
    batch_size: BatchSizeOption = 32,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Tag texts (arguments, a file or stdin): one JSON record per text, printed to stdout.

    Entities with character offsets, and a routing summary (how many candidates went to the
    LLM, and by which rule)."""
    from cdlm.errors import ConfigError

    if not text and input is None:
        raise ConfigError("no input: give TEXT arguments or --input FILE (- for stdin)")
    if llm != "none" and format != "jsonl":
        raise ConfigError("--format conll is not available with --llm; use jsonl")
    cfg = _run_config(config, llm, model, base_url, labels, sets)
    records = _records(text or [], input, input_format, cfg.corpus.max_text_chars)
    if checkpoint == "none":  # LLM-only mode, only when asked for by name
        _predict_llm_only(records, cfg, llm, domain, explain)
        return
    from cdlm.inference.model import CDLM

    m = CDLM.from_pretrained(checkpoint, config=cfg, quantize=quantize)
    if llm != "none":
        _note_missing_labels(cfg, m.data_domain(domain))
    if format == "conll":
        _print_conll(m, records, domain, batch_size)
        return
    llm_config = cfg.llm if llm != "none" else None
    _print_records(
        m.stream(
            records, domain=domain, threshold=threshold, llm=llm_config,
            batch_size=batch_size, explain=explain, route=route,
        )
    )  # fmt: skip


def corpus(
    input: CorpusInputOption,
    output: CorpusOutputOption,
    input_format: InputFormatOption = "auto",
    workers: WorkersOption = 1,
    threads: ThreadsOption = None,
    engine: EngineOption = "local",
    overwrite: OverwriteOption = False,
    progress: ProgressOption = True,
    quantize: QuantizeOption = "none",
    checkpoint: ModelOption = "default",
    domain: HeadOption = None,
    threshold: ThresholdOption = None,
    llm: LLMOption = "none",
    route: RouteOption = None,
    explain: ExplainOption = False,
    labels: LabelsOption = None,
    model: LLMModelOption = None,
    base_url: BaseUrlOption = None,
    batch_size: BatchSizeOption = 32,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Tag a corpus file into JSON Lines: streamed, in input order, resumable, parallel.

    In parallel: --workers processes, or Ray actors with --engine ray."""
    from cdlm.data.corpus import input_format as pick_format
    from cdlm.errors import ConfigError
    from cdlm.inference.corpus import PredictorSpec

    if checkpoint == "none":
        raise ConfigError("predict corpus needs a tagger model (LLM-only mode: `cdlm predict`)")
    cfg = _run_config(config, llm, model, base_url, labels, sets)
    predictor = PredictorSpec(
        model=checkpoint, config=cfg.model_dump(mode="json"), domain=domain,
        threshold=threshold, llm=llm, route=route, explain=explain, batch_size=batch_size,
        quantize=quantize,
    )  # fmt: skip
    _predict_corpus(
        input, output, predictor, cfg, fmt=pick_format(input, input_format), workers=workers,
        threads=threads, engine=engine, overwrite=overwrite, progress=progress,
    )  # fmt: skip


def _run_config(config, llm: str, model, base_url, labels, sets):  # -> CdlmConfig
    """The config of a predict run: --config, the LLM options, then --set on top."""
    from cdlm.config import llm_run_config

    options = {
        "llm.backend": llm,
        "llm.model": model,
        "llm.base_url": base_url,
        "reasoning.labels_file": str(labels) if labels else None,
    }
    return llm_run_config(config, llm, model, base_url, with_sets(options, sets))


def _predict_llm_only(records, cfg, llm: str, domain: str | None, explain: bool) -> None:
    """``--checkpoint none --llm X``: the LLM proposes the spans and picks their types."""
    from cdlm.errors import ConfigError
    from cdlm.inference.predict import llm_only_records

    if llm == "none":
        raise ConfigError("--checkpoint none needs --llm (LLM-only mode)")
    _note_missing_labels(cfg, domain or "politics")
    _print_records(llm_only_records([r["text"] for r in records], cfg, domain, explain))


def _print_conll(m, records, domain: str | None, batch_size: int) -> None:  # m: CDLM
    from cdlm.inference.tagging import conll_lines, tag_texts

    tagger = m.tagger(domain)
    while chunk := list(itertools.islice(records, batch_size)):
        texts = [r["text"] for r in chunk]
        for tagged in tag_texts(tagger, texts, max_padding=m.config.predict.max_padding):
            print("\n".join([*conll_lines(tagged), ""]))


def _records(texts: list[str], source: str | None, input_format: str, max_chars: int):
    """The TEXT arguments, then the records of ``--input`` read lazily; a text the model cannot
    take (too long, a lone surrogate) stops here with one line naming it."""
    from cdlm.data.corpus import input_format as pick_format
    from cdlm.data.corpus import read_records, record_problem
    from cdlm.errors import DataError

    numbered = ((f"TEXT argument {k}", {"text": t}) for k, t in enumerate(texts, start=1))
    if source is not None:
        name = "<stdin>" if source == "-" else source
        lines = read_records(source, pick_format(source, input_format))
        numbered = itertools.chain(numbered, ((f"{name}:{n}", record) for n, _, record in lines))
    for where, record in numbered:
        problem = record_problem(record, max_chars)
        if problem is not None:
            raise DataError(f"{where}: {problem}")
        yield record


def _predict_corpus(source: str, output: Path, predictor, cfg, **run) -> None:
    """The streaming, resumable corpus run (:mod:`cdlm.inference.corpus`) and its report;
    ``predictor`` is a PredictorSpec, ``cfg`` the run's CdlmConfig."""
    from cdlm.errors import DataError
    from cdlm.inference.corpus import predict_corpus

    result = predict_corpus(source, output, predictor, config=cfg.corpus, **run)
    skipped = f", {result.skipped} already done" if result.skipped else ""
    print(
        f"wrote {result.written} records to {output}{skipped} "
        f"({result.records_per_s:.1f} records/s)",
        file=sys.stderr,
    )
    if result.errors:
        raise DataError(
            f"{source}: {result.errors} records could not be tagged and were answered with an "
            f"'error' field in {output} (named above)"
        )


def _is_output(word: str) -> bool:
    """``-o``, ``-oFILE``, ``--output`` or ``--output=FILE``."""
    if word.startswith("--"):
        return word == "--output" or word.startswith("--output=")
    return word.startswith("-o")


def _legacy_predict(args: list[str]) -> list[str]:
    """``cdlm predict -i FILE -o OUT ...``, the corpus run before ``predict corpus``."""
    from cdlm.errors import ConfigError

    if not any(_is_output(word) for word in option_words(args)):
        return args
    format, rest = take_option(args, "--format")
    if format not in (None, "jsonl"):
        raise ConfigError("--output writes JSON Lines; --format conll prints to stdout only")
    deprecated("cdlm predict -i FILE -o OUT", "cdlm predict corpus")
    return ["corpus", *rest]


def _note_missing_labels(cfg, domain: str) -> None:  # cfg: cdlm.config.CdlmConfig
    """Say when the LLM will see the domain's types by name only (no label descriptions)."""
    from cdlm.reasoning.stages import load_prompts

    path = load_prompts(cfg.reasoning.prompts_dir, cfg.reasoning.labels_file).label_path(domain)
    if not path.is_file():
        print(
            f"note: no label descriptions for domain '{domain}' ({path}); the LLM sees the type "
            "names only (give them with --labels FILE.toml)",
            file=sys.stderr,
        )


def _print_records(records) -> None:  # Iterable[dict]: printed as they come
    candidates = routed = 0
    rule = ""
    for record in records:
        print(json.dumps(record, ensure_ascii=False), flush=True)
        candidates += record["routing"]["candidates"]
        routed += record["routing"]["routed"]
        rule = record["routing"]["rule"]
    if rule and rule != "no LLM":
        print(f"routed {routed} of {candidates} candidates to the LLM ({rule})", file=sys.stderr)


predict_app = typer.Typer(
    cls=plain_group(
        predict,
        legacy=_legacy_predict,
        aliases=PREDICT_ALIASES,
        epilog="More: `cdlm predict corpus -i FILE -o OUT` tags a corpus file into a resumable "
        'JSON Lines output (see its -h). A text that is literally "corpus": `cdlm predict -- '
        "corpus`.",
    ),
    help="Tag texts (arguments, a file or stdin) to stdout; `predict corpus` tags a corpus file "
    "into JSON Lines.",
)
predict_app.command("corpus", cls=aliased(CORPUS_ALIASES))(corpus)


def register(app: typer.Typer) -> None:
    """Add predict (with predict corpus) to the main app."""
    app.add_typer(predict_app, name="predict")
