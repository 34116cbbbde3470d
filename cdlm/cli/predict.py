"""``cdlm predict``: a thin layer over :class:`cdlm.CDLM` (one JSON record per input line)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.cli.options import LLMChoice

RouteChoice = Literal["hard", "all", "none"]
FormatChoice = Literal["jsonl", "conll"]
InputFormatChoice = Literal["auto", "text", "jsonl"]
EngineChoice = Literal["local", "ray"]
QuantizeChoice = Literal["none", "int8"]


def predict(
    text: Annotated[
        list[str] | None, typer.Argument(help="Texts to tag (one output line each).")
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="File (or - for stdin): one text per line, or JSON Lines records with a "
            "'text' field (.jsonl; other fields such as 'id' are kept). Read as a stream.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write JSON Lines here instead of stdout; an output this command wrote (a "
            "<output>.cdlm.json beside it) is resumed where it stopped; any other existing file, "
            "or the input itself, is refused.",
        ),
    ] = None,
    input_format: Annotated[
        InputFormatChoice,
        typer.Option(help="Input format; auto = jsonl for .jsonl/.ndjson files, else text."),
    ] = "auto",
    workers: Annotated[
        int, typer.Option(help="With --output: processes (or Ray actors) predicting.", min=1)
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(help="torch threads per worker (default: 1 with --workers > 1).", min=1),
    ] = None,
    engine: Annotated[
        EngineChoice,
        typer.Option(help="With --output: local processes, or Ray Data (pip install 'cdlm[ray]')."),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="With --engine ray: cluster address (default: $RAY_ADDRESS or local)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="With --output: start afresh instead of resuming (only over a file this "
            "command wrote)."
        ),
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="With --output: show a progress bar on stderr.")
    ] = True,
    quantize: Annotated[
        QuantizeChoice,
        typer.Option(help="int8: quantized encoder, faster on CPU (see evals/bench_corpus)."),
    ] = "none",
    checkpoint: Annotated[
        str,
        typer.Option(
            help="Model: 'default' (built by `cdlm model build-default`), a folder written by "
            "save_pretrained or `cdlm train`, or 'none' with --llm (LLM-only mode)."
        ),
    ] = "default",
    domain: Annotated[
        str | None,
        typer.Option(
            help="Which head: news, politics, science, music, literature or ai for the default "
            "model (default: news); a `cdlm train` run has its own domain only."
        ),
    ] = None,
    format: Annotated[FormatChoice, typer.Option("--format", help="Output format.")] = "jsonl",
    threshold: Annotated[
        float | None, typer.Option(help="Drop tagger entities scored below this (0..1).")
    ] = None,
    llm: Annotated[LLMChoice, typer.Option(help="LLM for the hard candidates.")] = "none",
    route: Annotated[
        RouteChoice | None,
        typer.Option(
            help="With --llm: which candidates go to the LLM: hard (the routing.* rule, "
            "default), all, or none."
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(help="With --llm: add causal links, votes and self-check verdicts."),
    ] = False,
    prompts_dir: Annotated[
        Path | None,
        typer.Option(
            help="With --llm: prompt templates folder (default: the ones inside the package; "
            "copy them out with `cdlm prompts export DIR`)."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help='With --llm: label file of your domain ([types] name = "description"); '
            "default: labels/<domain>.toml of the prompts, else the type names alone."
        ),
    ] = None,
    llm_budget: Annotated[
        float | None,
        typer.Option(help="With --llm: at most this share of texts goes to the LLM (0.2 = 20%)."),
    ] = None,
    llm_threshold: Annotated[
        float | None,
        typer.Option(
            help="With --llm: route candidates whose tagger confidence is below this "
            "(default: routing.threshold = 0.6)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="With --llm: GGUF path (llama) or model name (gpt) (default: embedded "
            "SmolLM2 / gpt-3.5-turbo-0125)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="With --llm gpt: OpenAI-compatible server URL."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per batch.", min=1)] = 32,
    config: Annotated[Path | None, typer.Option(help="TOML config file (CLI flags win).")] = None,
) -> None:
    """Tag raw text: one JSON object per input line, entities with character offsets and a
    routing summary (how many candidates went to the LLM, and by which rule)."""
    from cdlm.config import llm_run_config
    from cdlm.errors import ConfigError

    if not text and input is None:
        raise ConfigError("no input: give TEXT arguments or --input FILE (- for stdin)")
    if llm != "none" and format != "jsonl":
        raise ConfigError("--format conll is not available with --llm; use jsonl")
    if output is None and (workers > 1 or engine != "local"):
        raise ConfigError("--workers and --engine need --output FILE")
    cfg = llm_run_config(
        config,
        llm,
        model,
        base_url,
        {
            "reasoning.prompts_dir": str(prompts_dir) if prompts_dir else None,
            "reasoning.labels_file": str(labels) if labels else None,
            "routing.budget": llm_budget,
            "routing.threshold": llm_threshold,
            "corpus.ray_address": ray_address,
        },
    )
    if output is not None:
        _predict_corpus(
            input, output, text, checkpoint, cfg, domain=domain, threshold=threshold, llm=llm,
            route=route, explain=explain, batch_size=batch_size, input_format=input_format,
            format=format, workers=workers, threads=threads, engine=engine, overwrite=overwrite,
            progress=progress, quantize=quantize,
        )  # fmt: skip
        return
    records = _records(text or [], input, input_format, cfg.corpus.max_text_chars)
    if checkpoint == "none":  # LLM-only mode, only when asked for by name
        if llm == "none":
            raise ConfigError("--checkpoint none needs --llm (LLM-only mode)")
        from cdlm.inference.predict import llm_only_records

        _note_missing_labels(cfg, domain or "politics")
        _print_records(llm_only_records([r["text"] for r in records], cfg, domain, explain))
        return
    from cdlm.inference.model import CDLM

    m = CDLM.from_pretrained(checkpoint, config=cfg, quantize=quantize)
    if llm != "none":
        _note_missing_labels(cfg, m.data_domain(domain))
    if format == "conll":
        from cdlm.inference.tagging import conll_lines, tag_texts

        tagger = m.tagger(domain)
        while chunk := list(itertools.islice(records, batch_size)):
            texts = [r["text"] for r in chunk]
            for tagged in tag_texts(tagger, texts, max_padding=m.config.predict.max_padding):
                print("\n".join([*conll_lines(tagged), ""]))
        return
    _print_records(
        m.stream(
            records,
            domain=domain,
            threshold=threshold,
            llm=cfg.llm if llm != "none" else None,
            batch_size=batch_size,
            explain=explain,
            route=route,
        )
    )


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


def _predict_corpus(
    source: str | None,
    output: Path,
    texts: list[str] | None,
    checkpoint: str,
    cfg,  # CdlmConfig
    *,
    input_format: str,
    format: str,
    workers: int,
    threads: int | None,
    engine: str,
    overwrite: bool,
    progress: bool,
    **spec: object,
) -> None:
    """``--output``: the streaming, resumable corpus run (:mod:`cdlm.inference.corpus`)."""
    from cdlm.data.corpus import input_format as pick_format
    from cdlm.errors import ConfigError, DataError
    from cdlm.inference.corpus import PredictorSpec, predict_corpus

    if source is None or texts:
        raise ConfigError("--output reads its texts from --input FILE (not TEXT arguments)")
    if format != "jsonl":
        raise ConfigError("--output writes JSON Lines; --format conll prints to stdout only")
    if checkpoint == "none":
        raise ConfigError("--output needs a tagger model (LLM-only mode prints to stdout)")
    predictor = PredictorSpec(model=checkpoint, config=cfg.model_dump(mode="json"), **spec)
    result = predict_corpus(
        source,
        output,
        predictor,
        fmt=pick_format(source, input_format),
        workers=workers,
        threads=threads,
        engine=engine,
        config=cfg.corpus,
        overwrite=overwrite,
        progress=progress,
    )
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


def register(app: typer.Typer) -> None:
    app.command()(predict)
