"""``cdlm train``, ``cdlm eval`` and ``cdlm predict`` (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cdlm.errors import DataError
from cdlm.results import RESULTS_DIR


def _print_scores(title: str, scores) -> None:  # scores: cdlm.metrics.SpanScores
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("type", "P", "R", "F1", "gold", "predicted"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for t in scores.per_type:
        table.add_row(
            t.type,
            f"{100 * t.precision:.1f}",
            f"{100 * t.recall:.1f}",
            f"{100 * t.f1:.1f}",
            str(t.support),
            str(t.predicted),
        )
    table.add_row(
        "[bold]micro",
        f"[bold]{100 * scores.precision:.2f}",
        f"[bold]{100 * scores.recall:.2f}",
        f"[bold]{100 * scores.f1:.2f}",
        str(scores.support),
        str(scores.predicted),
    )
    Console().print(table)


def train(
    target: Annotated[str, typer.Option(help="Target domain (CrossNER name or BIO folder).")],
    source: Annotated[str | None, typer.Option(help="Source domain (default: conll2003).")] = None,
    seed: Annotated[int | None, typer.Option(help="Target training seed (default: 1).")] = None,
    source_seed: Annotated[
        int | None, typer.Option(help="Seed of the cached source pre-training (default: 1).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder (default: runs/<target>__<variant>__seed<N>)."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(help="Hugging Face encoder name or folder (default: embedded MiniLM)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (CLI flags win).")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant name for results (default: baseline).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Target epoch budget (default: train.target_epochs).")
    ] = None,
    source_epochs: Annotated[
        int | None, typer.Option(help="Source epochs, 0 skips (default: 1).")
    ] = None,
    max_train_sentences: Annotated[
        int | None, typer.Option(help="Use only the first N train sentences (quick runs).")
    ] = None,
    k_shot: Annotated[int | None, typer.Option(help="Sample K target sentences per type.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    runs_dir: Annotated[
        Path | None, typer.Option(help="Runs folder (default: $CDLM_RUNS_DIR or ./runs).")
    ] = None,
    no_explicit_cf: Annotated[
        bool,
        typer.Option("--no-explicit-cf", help="Switch off the input-level counterfactual views."),
    ] = False,
    no_implicit_cf: Annotated[
        bool,
        typer.Option("--no-implicit-cf", help="Switch off the cross-attention counterfactual."),
    ] = False,
    no_gcn: Annotated[
        bool, typer.Option("--no-gcn", help="Switch off the label-graph GCN fusion.")
    ] = False,
    augment: Annotated[
        str | None,
        typer.Option(
            help="none or factmix: FactMix semi-facts of the target train set, filtered "
            "by a tagger fine-tuned on the original set (default: none)."
        ),
    ] = None,
) -> None:
    """Pre-train on the source domain (cached), fine-tune on the target, keep the best epoch."""
    from cdlm.config import VARIANTS, load_config
    from cdlm.experiments.train import train as run_training

    flags = {
        "train.target": target,
        "train.source": source,
        "train.seed": seed,
        "train.source_seed": source_seed,
        "encoder.name": encoder,
        "train.variant": variant,
        "train.target_epochs": epochs,
        "train.source_epochs": source_epochs,
        "train.max_train_sentences": max_train_sentences,
        "train.k_shot": k_shot,
        "train.threads": threads,
        "augment.method": augment,
    }
    overrides = {
        # A named variant (cdlm.config.VARIANTS) switches its modules; other names only label.
        # Flags left unset must not undo it (e.g. --variant baseline+factmix without --augment).
        **VARIANTS.get(variant or "", {}),
        **{k: v for k, v in flags.items() if v is not None},
    }
    cfg = load_config(config, overrides)
    # Ablation switches win over the variant; the run gets its own name so it cannot overwrite
    # the full variant's checkpoint or results (e.g. "full-no-ecf").
    switches = {"explicit": no_explicit_cf, "implicit": no_implicit_cf}
    suffix = {"explicit": "-no-ecf", "implicit": "-no-icf"}
    for name, off in switches.items():
        if off and getattr(cfg.causal, name):
            setattr(cfg.causal, name, False)
            cfg.train.variant += suffix[name]
    if no_gcn and cfg.fusion.enabled:
        cfg.fusion.enabled = False
        cfg.train.variant += "-no-gcn"
    if cfg.augment.method == "factmix" and not cfg.train.variant.endswith("+factmix"):
        cfg.train.variant += "+factmix"  # own checkpoint folder and results name
    result = run_training(cfg, out, data_dir=data_dir, runs=runs_dir)
    print(f"checkpoint: {result.checkpoint}")
    src = "cached" if result.source_cached else f"{result.source_seconds:.0f} s"
    print(
        f"source pre-training: {src} ({result.source_checkpoint}); "
        f"target fine-tuning: {result.target_seconds:.0f} s, best epoch {result.best_epoch}"
    )
    _print_scores(f"{result.target} dev (best epoch)", result.dev)
    if result.test is not None:
        _print_scores(f"{result.target} test", result.test)
    if result.augment is not None:
        chosen, stats = result.augment["grid"]["chosen"], result.augment["stats"]
        print(
            f"factmix: ratios entity {chosen['entity_ratio']} context {chosen['context_ratio']} "
            f"(dev F1 {100 * chosen['dev_f1']:.2f}); filter kept "
            f"{stats['entity']['kept']}/{stats['entity']['generated']} entity-level, "
            f"{stats['context']['kept']}/{stats['context']['generated']} context-level"
        )


def evaluate(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder (default: runs/politics__baseline__seed1)."),
    ] = None,
    split: Annotated[str, typer.Option(help="train, dev or test.")] = "test",
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    domain: Annotated[
        str | None, typer.Option(help="Evaluate on this domain instead of the checkpoint's target.")
    ] = None,
    results_dir: Annotated[
        Path, typer.Option(help="Where the JSON and Markdown go.")
    ] = RESULTS_DIR,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="Run a suite file (variants x domains x seeds, e.g. evals/crossner.toml): "
            "trains or reuses each run; writes <name>.json/.md to the suite's results_dir."
        ),
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(help="With --suite: run only these of its variants (comma-separated)."),
    ] = None,
    domains: Annotated[
        str | None,
        typer.Option(help="With --suite: run only these of its domains (comma-separated)."),
    ] = None,
    llm: Annotated[
        str,
        typer.Option(help="none, llama or gpt: also score tagger + LLM reasoning."),
    ] = "none",
    calibrate: Annotated[
        bool,
        typer.Option(
            help="With --llm: pick the routing threshold with the best dev F1 "
            "(incl. routing nothing)."
        ),
    ] = False,
    subset: Annotated[
        int | None,
        typer.Option(help="With --llm: seeded subset of test sentences (default: all)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="With --llm: seed of the subsets.")] = 1,
    naive_subset: Annotated[
        int,
        typer.Option(
            help="With --llm: also run the route-everything pipeline (twice, for the "
            "cache) on the first N subset sentences."
        ),
    ] = 0,
    naive_start: Annotated[
        int,
        typer.Option(
            help="With --naive-subset: start the naive range at this subset sentence "
            "(ranges merge with evals/merge_naive.py)."
        ),
    ] = 0,
    model: Annotated[
        str | None,
        typer.Option(help="With --llm: GGUF path (llama) or model name (gpt)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="With --llm gpt: OpenAI-compatible server URL."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="With --llm: TOML config file (CLI flags win)."),
    ] = None,
) -> None:
    """Strict IOB2 span P/R/F1 and a per-type table, written to evals/results/ (JSON + Markdown)."""
    if suite is not None:
        from cdlm.experiments.suite import load_suite, run_suite, select_domains, select_variants

        spec = load_suite(suite)
        if variants:
            spec = select_variants(spec, [v.strip() for v in variants.split(",") if v.strip()])
        if domains:
            spec = select_domains(spec, [d.strip() for d in domains.split(",") if d.strip()])
        summary = run_suite(spec, data_dir=data_dir)
        print(
            f"suite {spec.name}: {len(summary['runs'])} runs; wrote "
            f"{spec.results_dir}/{spec.name}.json and .md"
        )
        return
    from cdlm.experiments.evaluate import evaluate_checkpoint, write_results
    from cdlm.inference.tagging import default_checkpoint

    if llm != "none":
        from cdlm.config import llm_run_config
        from cdlm.experiments.llm_eval import llm_eval, write_llm_results

        cfg = llm_run_config(config, llm, model, base_url)
        res = llm_eval(
            checkpoint or default_checkpoint(),
            cfg,
            subset=subset,
            seed=seed,
            calibrate_routing=calibrate,
            naive_subset=naive_subset,
            naive_start=naive_start,
            data_dir=data_dir,
            domain=domain,
        )
        _print_scores(f"{res.domain} test, tagger only", res.tagger)
        _print_scores(
            f"{res.domain} test, tagger + {llm} (threshold {res.threshold:.3f})", res.routed
        )
        path = write_llm_results(res, results_dir)
        st = res.routed_stats
        print(
            f"routed {st.routed_share:.1%}, {st.calls_per_sentence:.2f} calls/sentence, "
            f"fallbacks {st.fallbacks}; wrote {path} and {path.with_suffix('.md')}"
        )
        return

    result = evaluate_checkpoint(checkpoint or default_checkpoint(), split, data_dir, domain)
    _print_scores(f"{result.domain} {split} ({result.variant}, seed {result.seed})", result.scores)
    path = write_results(result, results_dir)
    print(f"{result.sentences} sentences, {result.sentences_per_s:.1f} sentences/s; wrote {path}")


def _read_lines(source: str) -> list[str]:
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
        Path | None,
        typer.Option(help="Checkpoint folder (default: runs/politics__baseline__seed1)."),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="jsonl or conll.")] = "jsonl",
    llm: Annotated[str, typer.Option(help="LLM for hard cases: none, llama or gpt.")] = "none",
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
            "(default: routing.threshold)."
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
    domain: Annotated[
        str | None,
        typer.Option(
            help="With --llm and no checkpoint: domain whose types the LLM looks for "
            "(default: politics)."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (CLI flags win).")] = None,
) -> None:
    """Tag raw text: one JSON object per input line with entity character offsets."""
    from cdlm.config import check_llm_choice
    from cdlm.errors import ConfigError
    from cdlm.inference.tagging import conll_lines, load_tagger, tag_texts, tagger_record

    if format not in ("jsonl", "conll"):
        raise ConfigError(f"--format: expected jsonl or conll, got {format!r}")
    check_llm_choice(llm)
    texts = list(text or [])
    if input is not None:
        texts += _read_lines(input)
    if not texts:
        raise ConfigError("no input: give TEXT arguments or --input FILE (- for stdin)")
    if llm != "none":
        if format != "jsonl":
            raise ConfigError("--format conll is not available with --llm; use jsonl")
        from cdlm.config import llm_run_config
        from cdlm.inference.predict import predict_with_llm
        from cdlm.inference.tagging import default_checkpoint, optional_tagger

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
        # LLM-only mode: no --checkpoint and no default checkpoint on disk.
        tagger = optional_tagger(checkpoint)
        if tagger is None:
            print(
                f"note: no checkpoint at {default_checkpoint()}; LLM-only mode (discovery "
                "proposes the spans)",
                file=sys.stderr,
            )
        for record in predict_with_llm(texts, cfg, model=tagger, domain=domain, explain=explain):
            print(json.dumps(record, ensure_ascii=False), flush=True)
        return
    model = load_tagger(checkpoint)
    chunk = 256  # print as we go on long inputs
    for k in range(0, len(texts), chunk):
        for tagged in tag_texts(model, texts[k : k + chunk]):
            if format == "jsonl":
                print(json.dumps(tagger_record(tagged), ensure_ascii=False))
            else:
                print("\n".join([*conll_lines(tagged), ""]))


def register(app: typer.Typer) -> None:
    """Add train, eval and predict to the main app."""
    app.command()(train)
    app.command(name="eval")(evaluate)
    app.command()(predict)
