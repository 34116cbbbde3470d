"""``cdlm model build-default|info``: the default model (:mod:`cdlm.experiments.default_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

model_app = typer.Typer(
    help="The default model (news + the five CrossNER domains, one encoder): build, inspect.",
    no_args_is_help=True,
)


@model_app.command("build-default")
def build_default(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Model folder (default: <cdlm home>/models/default-build)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if the same recipe is built.")] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(help="Where the cached source model is (default: $CDLM_RUNS_DIR or ./runs)."),
    ] = None,
    results_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where default_model.json/.md go (default: 'results' inside the model folder, "
            "so a build never rewrites the checkout's files; pass evals/results to record the "
            "scores of a model version you ship)."
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config file (sections default_model, train, ...).")
    ] = None,
    skip_without_data: Annotated[
        bool,
        typer.Option(
            help="Without the CrossNER data, say so in one line and exit 0 (for scripts)."
        ),
    ] = False,
) -> None:
    """Rebuild the shipped default model from its recipe and say whether it matches.

    Seeded; skipped when the same recipe is built there already. `cdlm predict` uses the shipped
    model; pass --checkpoint default-build (or the --output folder) to use this build."""
    from cdlm.config import load_config
    from cdlm.data.registry import find_data_dir
    from cdlm.errors import DataError
    from cdlm.experiments.default_model import RESULTS_NAME, build_default, check_replaceable
    from cdlm.experiments.ship import compare_with_shipped
    from cdlm.runs import model_dir

    cfg = load_config(config, {"train.threads": threads})
    check_replaceable(output or model_dir())  # a folder of the user's files: stop before all
    results_dir = results_dir or (output or model_dir()) / "results"
    try:
        find_data_dir(data_dir)
    except DataError as exc:
        if not skip_without_data:
            raise
        typer.echo(f"default model not built: {exc}, then `cdlm model build-default`", err=True)
        return
    result = build_default(cfg, output, data_dir=data_dir, runs=runs_dir, results_dir=results_dir)
    if result.skipped:
        typer.echo(f"default model up to date: {result.path} (recipe {result.recipe})")
    typer.echo(compare_with_shipped(result, cfg.default_model.ship_tolerance))
    if result.skipped:
        return
    for head in result.heads:
        test = f"{100 * head.test.f1:.2f}" if head.test is not None else "-"
        typer.echo(f"{head.domain:<11} dev F1 {100 * head.dev.f1:6.2f}  test F1 {test:>6}")
    results = Path(results_dir) / f"{RESULTS_NAME}.json"
    typer.echo(
        f"default model: {result.path} (best epoch {result.best_epoch}, built in "
        f"{result.build_seconds:.0f} s); scores in {results}"
    )


@model_app.command("ship")
def ship(
    built: Annotated[
        Path,
        typer.Option("--from", help="A model folder `cdlm model build-default` built today."),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Shipped folder (default: the package's own)."),
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    results_dir: Annotated[
        Path, typer.Option(help="Where default_model_shipped.json/.md go.")
    ] = Path("evals/results"),
    config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
) -> None:
    """Pack a built default model into the package (maintainers; docs/commands.md).

    Refused when any head's F1 moves more than default_model.ship_tolerance from the build's."""
    from cdlm.config import load_config
    from cdlm.experiments.ship import SHIPPED_NAME
    from cdlm.experiments.ship import ship as ship_model

    cfg = load_config(config)
    result = ship_model(cfg, built, output, data_dir=data_dir, results_dir=results_dir)
    for h in result.heads:
        typer.echo(
            f"{h.domain:<11} {h.split:<4} built {h.built_f1:6.2f}  shipped {h.shipped_f1:6.2f}"
            f"  ({h.delta:+.2f})"
        )
    typer.echo(
        f"shipped recipe {result.recipe}: {result.weights_bytes / 2**20:.1f} MiB "
        f"(built {result.built_weights_bytes / 2**20:.1f} MiB); "
        f"scores in {results_dir / (SHIPPED_NAME + '.json')}"
    )


@model_app.command("info")
def info(
    name: Annotated[
        str, typer.Argument(help="'default', a model name or a model folder.")
    ] = "default",
) -> None:
    """Where a model is, its domains and their entity types, and its scores if recorded."""
    import json

    from cdlm.inference.model import CDLM

    m = CDLM.from_pretrained(name)
    typer.echo(f"model: {m.path}")
    typer.echo(f"default domain: {m.default_domain}")
    scores = {}
    scores_file = Path(str(m.path)) / "scores.json"
    if scores_file.is_file():
        record = json.loads(scores_file.read_text(encoding="utf-8"))
        scores = {h["domain"]: h for h in record.get("heads", [])}
    for domain in m.domains:
        line = f"{domain}: {', '.join(m.labels(domain))}"
        if domain in scores and scores[domain].get("test"):
            line += f"  (test F1 {100 * scores[domain]['test']['f1']:.2f})"
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add ``cdlm model ...`` to the main app."""
    app.add_typer(model_app, name="model")
