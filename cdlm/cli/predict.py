"""``cdlm predict``: a thin layer over :class:`cdlm.CDLM` (one JSON record per input line)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.errors import DataError

LLMChoice = Literal["none", "llama", "gpt"]
RouteChoice = Literal["hard", "all", "none"]
FormatChoice = Literal["jsonl", "conll"]


def read_lines(source: str) -> list[str]:
    """Lines of a file (or stdin for ``-``) without their line ends; bad UTF-8 names the line."""
    data = sys.stdin.buffer.read() if source == "-" else None
    name = "<stdin>" if source == "-" else source
    if data is None:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise DataError(f"{source}: cannot read input ({exc.strerror or exc})") from None
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"{name}:{number}: not valid UTF-8") from None
    return lines


def predict(
    text: Annotated[
        list[str] | None, typer.Argument(help="Texts to tag (one output line each).")
    ] = None,
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", help="File with one text per line, or - for stdin."),
    ] = None,
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
        typer.Option(help="With --llm: prompt templates folder (default: prompts/)."),
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

    texts = list(text or [])
    if input is not None:
        texts += read_lines(input)
    if not texts:
        raise ConfigError("no input: give TEXT arguments or --input FILE (- for stdin)")
    if llm != "none" and format != "jsonl":
        raise ConfigError("--format conll is not available with --llm; use jsonl")
    cfg = llm_run_config(
        config,
        llm,
        model,
        base_url,
        {
            "reasoning.prompts_dir": str(prompts_dir) if prompts_dir else None,
            "routing.budget": llm_budget,
            "routing.threshold": llm_threshold,
        },
    )
    if checkpoint == "none":  # LLM-only mode, only when asked for by name
        if llm == "none":
            raise ConfigError("--checkpoint none needs --llm (LLM-only mode)")
        from cdlm.inference.predict import llm_only_records

        _print_records(llm_only_records(texts, cfg, domain, explain))
        return
    from cdlm.inference.model import CDLM

    m = CDLM.from_pretrained(checkpoint, config=cfg)
    if format == "conll":
        from cdlm.inference.tagging import conll_lines, tag_texts

        tagger = m.tagger(domain)
        for k in range(0, len(texts), batch_size):
            for tagged in tag_texts(tagger, texts[k : k + batch_size]):
                print("\n".join([*conll_lines(tagged), ""]))
        return
    records = m.stream(
        texts,
        domain=domain,
        threshold=threshold,
        llm=cfg.llm if llm != "none" else None,
        batch_size=batch_size,
        explain=explain,
        route=route,
    )
    _print_records(records)


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
