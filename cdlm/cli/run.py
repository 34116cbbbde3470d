"""``cdlm train``, ``cdlm eval`` (one model on a dataset), ``cdlm eval suite FILE`` and ``cdlm
eval llm`` (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.cli.dispatch import Alias, aliased, deprecated, option_words, plain_group, take_option
from cdlm.cli.options import (
    BaseUrlOption,
    ConfigOption,
    DataDirOption,
    LabelsOption,
    LLMModelOption,
    ModelOption,
    RunsDirOption,
    SetOption,
    SplitChoice,
    old_output_option,
    output_option,
    parse_sets,
    pick_output,
    with_sets,
)
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


# `cdlm train` options that only set one config key: still read, as --set (with a note).
TRAIN_ALIASES = {
    "--source-seed": Alias("train.source_seed"),
    "--encoder": Alias("encoder.name", text=True),
    "--max-train-sentences": Alias("train.max_train_sentences"),
    "--k-shot": Alias("train.k_shot"),
    "--no-explicit-cf": Alias("causal.explicit", "false"),
    "--no-implicit-cf": Alias("causal.implicit", "false"),
    "--no-gcn": Alias("fusion.enabled", "false"),
}

TargetOption = Annotated[
    str, typer.Option("--target", help="Target domain (CrossNER name or BIO folder).")
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="Source domain (default: conll2003).")
]
UnlabeledOption = Annotated[
    Path | None,
    typer.Option(
        "--unlabeled",
        metavar="FILE",
        help="Self-training: unlabeled texts (one a line, or JSONL with 'text'); the tagger "
        "labels them and its confident spans join the gold sentences (threshold, weight and "
        "rounds chosen on dev).",
    ),
]
VerifyOption = Annotated[
    str | None,
    typer.Option(
        "--verify",
        metavar="none|llm",
        help="With --unlabeled: send the uncertain pseudo-spans through the LLM vote first.",
    ),
]
WithOption = Annotated[
    str | None,
    typer.Option(
        "--with",
        metavar="DOMAINS",
        help="Train beside these labelled domains, comma-separated (CrossNER names, the paper's "
        "datasets, or folders), each through its own head; 'all': CoNLL-2003 and the five "
        "CrossNER domains less the target; 'none' (default): the target alone.",
    ),
]
VariantOption = Annotated[
    str | None,
    typer.Option(
        "--variant",
        metavar="[baseline|gcn|causal|full|<v>+factmix|NAME]",
        help="Model variant (default: the config as it is, named 'default'); a name not "
        "in the list only labels the run. A module switched off on top (--set "
        "causal.explicit=false) renames the run (full-no-ecf).",
    ),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Target training seed (default: 1).")
]
AugmentOption = Annotated[
    Literal["none", "factmix"] | None,
    typer.Option(
        "--augment",
        help="FactMix semi-facts of the target train set, filtered by a tagger fine-tuned "
        "on the original set (default: none).",
    ),
]
EpochsOption = Annotated[
    int | None,
    typer.Option("--epochs", help="Target epoch budget (default: train.target_epochs)."),
]
SourceEpochsOption = Annotated[
    int | None, typer.Option("--source-epochs", help="Source epochs, 0 skips (default: 1).")
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")]
TrainOutputOption = Annotated[
    Path | None,
    output_option("Checkpoint folder (default: runs/<target>__<variant>__seed<N>)."),
]
OldOutOption = Annotated[Path | None, old_output_option("--out")]


def train(
    target: TargetOption,
    source: SourceOption = None,
    with_domains: WithOption = None,
    unlabeled: UnlabeledOption = None,
    verify: VerifyOption = None,
    variant: VariantOption = None,
    seed: SeedOption = None,
    augment: AugmentOption = None,
    epochs: EpochsOption = None,
    source_epochs: SourceEpochsOption = None,
    threads: ThreadsOption = None,
    output: TrainOutputOption = None,
    out: OldOutOption = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    data_dir: DataDirOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Train a tagger: source pre-training (cached), target fine-tuning, best dev epoch kept."""
    output = pick_output(output, out, "--out")
    from cdlm.experiments.train import train as run_training
    from cdlm.experiments.variants import variant_config

    options = {
        "train.target": target,
        "train.source": source,
        "train.seed": seed,
        "train.variant": variant,
        "train.target_epochs": epochs,
        "train.source_epochs": source_epochs,
        "train.threads": threads,
        "augment.method": augment,
    }
    options["multisource.auxiliaries"] = _auxiliaries(with_domains)
    options["selftrain.pool"] = str(unlabeled) if unlabeled is not None else None
    options["selftrain.verify"] = verify
    cfg = variant_config(config, variant, options, parse_sets(sets, options))
    if cfg.selftrain.pool is not None:
        _self_train(cfg, output, data_dir, runs_dir)
        return
    if cfg.multisource.auxiliaries:
        from cdlm.experiments.multisource import train_multisource as run_training
    result = run_training(cfg, output, data_dir=data_dir, runs=runs_dir)
    _report_training(result, cfg, data_dir)


def _self_train(cfg, output: Path | None, data_dir: Path | None, runs: Path | None) -> None:
    """``--unlabeled FILE``: the self-training recipe; its run is named ``<variant>+selftrain``
    so it never takes the plain run's folder."""
    from cdlm.experiments.selftrain import run_selftrain
    from cdlm.runs import default_out_dir

    if output is None:
        named = cfg.model_copy(deep=True)
        named.train.variant = f"{cfg.train.variant}+selftrain"
        output = default_out_dir(named, runs)
    result = run_selftrain(cfg, output, data_dir=data_dir, runs=runs)
    print(f"checkpoint: {result.checkpoint} (teacher: {result.teacher})")
    print(f"pool: {result.pool_texts} texts; chosen on dev: {result.chosen.model_dump()}")
    _print_scores(f"{result.target} dev (teacher {100 * result.teacher_dev_f1:.2f})", result.dev)
    for stage, usage in (result.llm_usage or {}).items():
        print(f"llm {stage}: {usage}")


def _auxiliaries(names: str | None) -> list[str] | None:
    """``--with a,b`` -> ["a", "b"]; ``none`` -> [] (the target alone); unset -> the config's."""
    if names is None:
        return None
    found = [n.strip() for n in names.split(",") if n.strip()]
    return [] if found == ["none"] else found


def _report_training(result, cfg, data_dir: Path | None) -> None:  # TrainResult, CdlmConfig
    print(f"checkpoint: {result.checkpoint}")
    src = "cached" if result.source_cached else f"{result.source_seconds:.0f} s"
    print(
        f"source pre-training: {src} ({result.source_checkpoint}); "
        f"target fine-tuning: {result.target_seconds:.0f} s, best epoch {result.best_epoch}"
    )
    _print_scores(f"{result.target} dev (best epoch)", result.dev)
    if result.test is not None:
        _print_scores(f"{result.target} test", result.test)
    else:
        from cdlm.data.registry import split_path

        print(f"no test score: {split_path(cfg.train.target, 'test', data_dir)} not found")
    if result.augment is not None:
        chosen, stats = result.augment["grid"]["chosen"], result.augment["stats"]
        print(
            f"factmix: ratios entity {chosen['entity_ratio']} context {chosen['context_ratio']} "
            f"(dev F1 {100 * chosen['dev_f1']:.2f}); filter kept "
            f"{stats['entity']['kept']}/{stats['entity']['generated']} entity-level, "
            f"{stats['context']['kept']}/{stats['context']['generated']} context-level"
        )


EvalDomainOption = Annotated[
    str | None,
    typer.Option(
        "--domain",
        help="Domain to score: a head of the model (news, politics, ...) or a BIO dataset "
        "with the default head's labels (default: the default head's own data).",
    ),
]
EvalOutputOption = Annotated[
    Path | None,
    output_option(
        "Folder for the JSON and Markdown (default: evals/results under the folder you run "
        "cdlm in; the command prints the path it wrote)."
    ),
]
OldResultsDirOption = Annotated[Path | None, old_output_option("--results-dir")]
EvalPlotOption = Annotated[
    bool,
    typer.Option(
        "--plot",
        help="Also write PNGs beside the results: type confusion (with missed/spurious), F1 "
        "per type, learning curve (needs the plot extra).",
    ),
]


def evaluate(
    checkpoint: ModelOption = "default",
    split: Annotated[SplitChoice, typer.Option(help="Split to score.")] = "test",
    domain: EvalDomainOption = None,
    data_dir: DataDirOption = None,
    output: EvalOutputOption = None,
    results_dir: OldResultsDirOption = None,
    plot: EvalPlotOption = False,
    sets: SetOption = None,
) -> None:
    """Score one model on a dataset split: strict IOB2 span P/R/F1 per type (JSON + Markdown).

    Written to evals/results/ (or --output)."""
    from cdlm.errors import ConfigError
    from cdlm.experiments.evaluate import evaluate_checkpoint, write_results

    if sets:
        raise ConfigError(
            "--set: `cdlm eval` scores a model with the config it was saved with, so there is "
            "nothing to set here yet (`cdlm eval llm` and `cdlm eval suite` take --set)"
        )
    results_dir = pick_output(output, results_dir, "--results-dir") or RESULTS_DIR
    result = evaluate_checkpoint(checkpoint, split, data_dir, domain)
    _print_scores(f"{result.domain} {split} ({result.variant}, seed {result.seed})", result.scores)
    path = write_results(result, results_dir)
    print(f"{result.sentences} sentences, {result.sentences_per_s:.1f} sentences/s; wrote {path}")
    if plot:
        from cdlm.experiments.plots import plot_eval

        written, skipped = plot_eval(result, path)
        for png in written:
            print(f"wrote {png}")
        for why in skipped:
            print(f"no plot of the {why}")


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


SuiteFileArgument = Annotated[
    Path,
    typer.Argument(
        metavar="FILE", help="Suite file: variants x domains x seeds (evals/crossner.toml)."
    ),
]
VariantsOption = Annotated[
    str | None,
    typer.Option(
        "--variants",
        help="Train only these of its variants (comma-separated); the results still cover the "
        "whole suite.",
    ),
]
DomainsOption = Annotated[
    str | None,
    typer.Option(
        "--domains",
        help="Train only these of its domains (comma-separated); the results still cover the "
        "whole suite.",
    ),
]
TrainRunsOption = Annotated[
    bool,
    typer.Option(
        "--train/--no-train",
        help="Train the runs not finished yet (default), or with --no-train only write the "
        "results of the finished ones (in the runs folder or recorded in the ledger).",
    ),
]
SuiteOutputOption = Annotated[
    Path | None,
    output_option(
        "Folder for <name>.json/.md (default: the suite's results_dir; the recorded runs stay "
        "in the suite's ledger)."
    ),
]
SuitePlotOption = Annotated[
    bool,
    typer.Option("--plot", help="Also write the F1 bars with seed error bars (PNG)."),
]


def suite(
    file: SuiteFileArgument,
    variants: VariantsOption = None,
    domains: DomainsOption = None,
    train: TrainRunsOption = True,
    output: SuiteOutputOption = None,
    results_dir: OldResultsDirOption = None,
    data_dir: DataDirOption = None,
    plot: SuitePlotOption = False,
    sets: SetOption = None,
) -> None:
    """Run a suite file: train or reuse every variant x domain x seed, write the comparison.

    <name>.json and .md go to the suite's results_dir (or --output); --set applies to every
    run, as the suite's overrides do."""
    from cdlm.experiments.suite import run_suite, select_domains, select_variants

    spec = _suite_spec(file, pick_output(output, results_dir, "--results-dir"), sets)
    part = spec
    if variants:
        part = select_variants(part, _names(variants))
    if domains:
        part = select_domains(part, _names(domains))
    summary = run_suite(spec, data_dir=data_dir, train=train, part=part)
    print(
        f"suite {spec.name}: {len(summary['runs'])} of {summary['planned']} runs; wrote "
        f"{spec.results_dir}/{spec.name}.json and .md"
    )
    if plot:
        _plot_suite(spec, summary)


def _suite_spec(file: Path, results: Path | None, sets: list[str] | None):  # -> SuiteSpec
    """The suite of ``file``, writing its results to ``results`` (its ledger stays put), with
    the user's ``--set`` on top of its overrides."""
    from cdlm.config import load_config
    from cdlm.experiments.suite import ledger_dir, load_suite

    spec = load_suite(file)
    update: dict = {}
    if results is not None:
        update = {"results_dir": str(results), "ledger": str(ledger_dir(spec))}
    if sets:
        extra = parse_sets(sets, {})
        load_config(None, extra)  # a wrong key or value fails now, not at the first run
        update["overrides"] = {**spec.overrides, **extra}
    return spec.model_copy(update=update) if update else spec


def _plot_suite(spec, summary: dict) -> None:  # spec: SuiteSpec
    from cdlm.experiments.plots import plot_suite, plot_suite_deltas

    png = Path(spec.results_dir) / f"{spec.name}.png"
    plot_suite(summary, png)
    print(f"wrote {png}")
    if spec.baseline in summary["summary"]["average"]:
        delta_png = png.with_suffix(".delta.png")
        plot_suite_deltas(summary, delta_png)
        print(f"wrote {delta_png}")


def evaluate_llm(
    llm: Annotated[
        Literal["llama", "gpt"],
        typer.Option("--llm", help="The LLM: llama (GGUF) or gpt (OpenAI-compatible API)."),
    ] = "llama",
    checkpoint: ModelOption = "default",
    domain: EvalDomainOption = None,
    data_dir: DataDirOption = None,
    output: EvalOutputOption = None,
    results_dir: OldResultsDirOption = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Pick the routing threshold with the best dev F1 (incl. routing nothing)."
        ),
    ] = False,
    subset: Annotated[
        int | None, typer.Option(help="Seeded subset of test sentences (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the subsets.")] = 1,
    naive_subset: Annotated[
        int,
        typer.Option(
            help="Also run the route-everything pipeline (twice, for the cache) on the first "
            "N subset sentences."
        ),
    ] = 0,
    naive_start: Annotated[
        int,
        typer.Option(
            help="With --naive-subset: start the naive range at this subset sentence (ranges "
            "merge with evals/merge_naive.py)."
        ),
    ] = 0,
    model: LLMModelOption = None,
    base_url: BaseUrlOption = None,
    labels: LabelsOption = None,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Score the tagger alone against tagger + LLM on the hard cases: F1, routing, cost.

    Written to evals/results/ (or --output) as JSON + Markdown."""
    from cdlm.config import llm_run_config
    from cdlm.experiments.llm_eval import llm_eval, write_llm_results

    options = {"reasoning.labels_file": str(labels) if labels else None}
    cfg = llm_run_config(config, llm, model, base_url, with_sets(options, sets))
    res = llm_eval(
        checkpoint, cfg, subset=subset, seed=seed, calibrate_routing=calibrate,
        naive_subset=naive_subset, naive_start=naive_start, data_dir=data_dir, domain=domain,
    )  # fmt: skip
    _print_scores(f"{res.domain} test, tagger only", res.tagger)
    _print_scores(f"{res.domain} test, tagger + {llm} (threshold {res.threshold:.3f})", res.routed)
    path = write_llm_results(res, pick_output(output, results_dir, "--results-dir") or RESULTS_DIR)
    st = res.routed_stats
    print(
        f"routed {st.routed_share:.1%}, {st.calls_per_sentence:.2f} calls/sentence, "
        f"fallbacks {st.fallbacks}; wrote {path} and {path.with_suffix('.md')}"
    )


def _legacy_eval(args: list[str]) -> list[str]:
    """``cdlm eval --suite FILE ...`` and ``cdlm eval --llm X ...``, the spellings before the
    subcommands, as ``cdlm eval suite FILE ...`` and ``cdlm eval llm --llm X ...``."""
    from cdlm.errors import ConfigError

    file, rest = take_option(args, "--suite")
    if file is not None:
        deprecated("cdlm eval --suite FILE", "cdlm eval suite FILE")
        return ["suite", file, *rest]
    backend, rest = take_option(args, "--llm")
    if backend is None or backend == "none":  # --llm none was the plain evaluation
        return rest
    if "--plot" in option_words(rest):
        raise ConfigError("--plot is not available with --llm yet; run without --llm to plot")
    deprecated("cdlm eval --llm", "cdlm eval llm --llm")
    return ["llm", *args]


eval_app = typer.Typer(
    cls=plain_group(
        evaluate,
        legacy=_legacy_eval,
        epilog="More: `cdlm eval suite FILE` runs a suite file (variants x domains x seeds); "
        "`cdlm eval llm` scores the tagger against tagger + LLM. See their -h.",
    ),
    help="Score one model on a dataset (JSON + Markdown results); `eval suite FILE` runs a "
    "suite, `eval llm` adds the LLM.",
)
eval_app.command("suite")(suite)
eval_app.command("llm")(evaluate_llm)


def register(app: typer.Typer) -> None:
    """Add train and eval (with eval suite and eval llm) to the main app."""
    app.command(cls=aliased(TRAIN_ALIASES))(train)
    app.add_typer(eval_app, name="eval")
