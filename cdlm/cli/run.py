"""``cdlm train`` and ``cdlm eval`` (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.cli.options import (
    LLMChoice,
    SplitChoice,
    old_output_option,
    output_option,
    pick_output,
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


def train(
    target: Annotated[str, typer.Option(help="Target domain (CrossNER name or BIO folder).")],
    source: Annotated[str | None, typer.Option(help="Source domain (default: conll2003).")] = None,
    seed: Annotated[int | None, typer.Option(help="Target training seed (default: 1).")] = None,
    source_seed: Annotated[
        int | None, typer.Option(help="Seed of the cached source pre-training (default: 1).")
    ] = None,
    output: Annotated[
        Path | None,
        output_option("Checkpoint folder (default: runs/<target>__<variant>__seed<N>)."),
    ] = None,
    out: Annotated[Path | None, old_output_option("--out")] = None,
    encoder: Annotated[
        str | None,
        typer.Option(help="Hugging Face encoder name or folder (default: embedded MiniLM)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file (CLI flags win).")] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            metavar="[baseline|gcn|causal|full|<v>+factmix|NAME]",
            help="Model variant (default: the config as it is, named 'default'); a name not "
            "in the list only labels the run.",
        ),
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
        Literal["none", "factmix"] | None,
        typer.Option(
            help="FactMix semi-facts of the target train set, filtered by a tagger fine-tuned "
            "on the original set (default: none)."
        ),
    ] = None,
) -> None:
    """Pre-train on the source domain (cached), fine-tune on the target, keep the best epoch."""
    output = pick_output(output, out, "--out")
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
    result = run_training(cfg, output, data_dir=data_dir, runs=runs_dir)
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

        print(
            f"no test score: {split_path(cfg.train.target or target, 'test', data_dir)} not found"
        )
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
        str,
        typer.Option(
            help="Model: 'default' (the default model), a model folder or a `cdlm train` run."
        ),
    ] = "default",
    split: Annotated[SplitChoice, typer.Option(help="Split to score.")] = "test",
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    domain: Annotated[
        str | None,
        typer.Option(
            help="Domain to score: a head of the model (news, politics, ...) or a BIO dataset "
            "with the default head's labels (default: the default head's own data)."
        ),
    ] = None,
    output: Annotated[
        Path | None, output_option("Folder for the JSON and Markdown (default: evals/results).")
    ] = None,
    results_dir: Annotated[Path | None, old_output_option("--results-dir")] = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="Run a suite file (variants x domains x seeds, e.g. evals/crossner.toml): "
            "trains or reuses each run; writes <name>.json/.md to the suite's results_dir "
            "(or --output; the recorded runs stay in the suite's ledger)."
        ),
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="With --suite: train only these of its variants (comma-separated); the "
            "results still cover the whole suite."
        ),
    ] = None,
    domains: Annotated[
        str | None,
        typer.Option(
            help="With --suite: train only these of its domains (comma-separated); the "
            "results still cover the whole suite."
        ),
    ] = None,
    train: Annotated[
        bool,
        typer.Option(
            help="With --suite: train the runs not finished yet (default), or with --no-train "
            "only write the results of the finished ones (in the runs folder or recorded in "
            "the suite's ledger)."
        ),
    ] = True,
    llm: Annotated[
        LLMChoice, typer.Option(help="Also score tagger + LLM reasoning with this backend.")
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
    labels: Annotated[
        Path | None,
        typer.Option(help="With --llm: label file of the domain (see `cdlm predict --help`)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="With --llm: TOML config file (CLI flags win)."),
    ] = None,
    plot: Annotated[
        bool,
        typer.Option(
            "--plot",
            help="Also write PNGs beside the results: type confusion (with missed/spurious), "
            "F1 per type, learning curve; with --suite the F1 bars with seed error bars.",
        ),
    ] = False,
) -> None:
    """Strict IOB2 span P/R/F1 and a per-type table, written to evals/results/ (JSON + Markdown)."""
    if plot and llm != "none" and suite is None:
        from cdlm.errors import ConfigError

        raise ConfigError("--plot is not available with --llm yet; run without --llm to plot")
    explicit_dir = pick_output(output, results_dir, "--results-dir")
    results_dir = explicit_dir or RESULTS_DIR
    if suite is not None:
        from cdlm.experiments.suite import (
            ledger_dir,
            load_suite,
            run_suite,
            select_domains,
            select_variants,
        )

        spec = load_suite(suite)
        if explicit_dir is not None:  # the results go there; the recorded runs stay put
            spec = spec.model_copy(
                update={"results_dir": str(explicit_dir), "ledger": str(ledger_dir(spec))}
            )
        part = spec
        if variants:
            part = select_variants(part, [v.strip() for v in variants.split(",") if v.strip()])
        if domains:
            part = select_domains(part, [d.strip() for d in domains.split(",") if d.strip()])
        summary = run_suite(spec, data_dir=data_dir, train=train, part=part)
        print(
            f"suite {spec.name}: {len(summary['runs'])} of {summary['planned']} runs; wrote "
            f"{spec.results_dir}/{spec.name}.json and .md"
        )
        if plot:
            from cdlm.experiments.plots import plot_suite, plot_suite_deltas

            png = Path(spec.results_dir) / f"{spec.name}.png"
            plot_suite(summary, png)
            print(f"wrote {png}")
            if spec.baseline in summary["summary"]["average"]:
                delta_png = png.with_suffix(".delta.png")
                plot_suite_deltas(summary, delta_png)
                print(f"wrote {delta_png}")
        return
    from cdlm.experiments.evaluate import evaluate_checkpoint, write_results

    if llm != "none":
        from cdlm.config import llm_run_config
        from cdlm.experiments.llm_eval import llm_eval, write_llm_results

        cfg = llm_run_config(
            config,
            llm,
            model,
            base_url,
            {"reasoning.labels_file": str(labels) if labels else None},
        )
        res = llm_eval(
            checkpoint,
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


def register(app: typer.Typer) -> None:
    """Add train and eval to the main app."""
    app.command()(train)
    app.command(name="eval")(evaluate)
