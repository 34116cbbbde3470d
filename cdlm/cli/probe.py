"""``cdlm probe``: the counterfactual entity-bias probe (:mod:`cdlm.experiments.probe`) for any
checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cdlm.cli.options import output_option

ProbeCheckpointOption = Annotated[
    Path, typer.Option("--checkpoint", help="Checkpoint folder saved by `cdlm train`.")
]
ProbeInputOption = Annotated[
    str,
    typer.Option(
        "--input",
        help="A BIO file, or CrossNER DOMAIN or DOMAIN/SPLIT (politics/dev; default test).",
    ),
]
PlaceholderOption = Annotated[
    Literal["nonce", "mask"] | None,
    typer.Option(
        "--placeholder",
        help="nonce (casing-preserving made-up words) or mask (the token ENT in brackets).",
    ),
]
ProbeOutputOption = Annotated[
    Path | None,
    output_option("Results JSON (default evals/results/probe__DOMAIN__VARIANT.json)."),
]


def probe(
    checkpoint: ProbeCheckpointOption,
    input: ProbeInputOption,
    data_dir: Annotated[
        Path | None, typer.Option(help="CrossNER data folder (default: see `cdlm data`).")
    ] = None,
    placeholder: PlaceholderOption = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the name draws.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Probe only the first N sentences.")
    ] = None,
    output: ProbeOutputOption = None,
) -> None:
    """Probe entity bias: swap the predicted entities' names, count how often the type holds.

    Each predicted entity is replaced by a same-type name from another domain and by a
    placeholder; the report says how often the predicted type survives (overall, per type)."""
    from cdlm.errors import ConfigError
    from cdlm.experiments.probe import ProbeResult, resolve_input, run_probe, write_probe
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp

    if placeholder not in (None, "nonce", "mask"):
        raise ConfigError(f"--placeholder {placeholder!r}: expected nonce or mask")
    model = Tagger.load(checkpoint)
    sentences, name, domain = resolve_input(input, data_dir)
    if limit is not None:
        sentences = sentences[:limit]
    own_domain = domain or model.config.train.target
    mode = placeholder or model.config.causal.probe_placeholder
    seed = model.config.causal.probe_seed if seed is None else seed
    n_entities, modes = run_probe(model, sentences, own_domain, data_dir, mode, seed)  # type: ignore[arg-type]
    config = model.config.model_dump(mode="json")
    result = ProbeResult(
        domain=name,
        variant=model.config.train.variant,
        input=input,
        checkpoint=str(checkpoint),
        sentences=len(sentences),
        predicted_entities=n_entities,
        placeholder=mode,
        seed=seed,
        modes=modes,
        config=config,
        provenance=stamp(seed=seed, config=config),
    )
    path = write_probe(result, output)
    _print_survival(result, name, n_entities, modes)
    print(f"wrote {path}")


def _print_survival(result, name: str, n_entities: int, modes: dict) -> None:
    """The type survival table of a probe (result: ProbeResult), one row per type."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"type survival: {name} / {result.variant} ({n_entities} entities)")
    table.add_column("type")
    for m in modes:
        table.add_column(f"{m} rate", justify="right")
        table.add_column("n", justify="right")
    table.add_column("swap names from")

    def cells(label: str | None) -> list[str]:
        out: list[str] = []
        for m in modes.values():
            s = m.overall if label is None else m.per_type.get(label)
            rate = "-" if s is None or s.rate is None else f"{100 * s.rate:.1f}%"
            out += [rate, "0" if s is None else str(s.entities)]
        return out

    swap = modes["swap"]
    for label in sorted(set().union(*(m.per_type for m in modes.values()))):
        pool = swap.per_type[label].pool if label in swap.per_type else ""
        table.add_row(label, *cells(label), pool or "")
    table.add_row("[bold]overall[/bold]", *cells(None), "")
    console = Console()
    console.print(table)
    if swap.overall.skipped:
        console.print(f"{swap.overall.skipped} entities had no same-type name to swap in (skipped)")


def tune_alpha(
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint with the explicit counterfactual.")],
    grid: Annotated[
        str | None, typer.Option(help="Comma-separated alphas [default: causal.alpha_grid].")
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Store the chosen alpha in the checkpoint.")
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
) -> None:
    """Pick the debiasing strength alpha (z_full - alpha * z_ent) by dev F1 only."""
    from cdlm.data.registry import domain_name, load_split
    from cdlm.errors import ConfigError
    from cdlm.experiments.debias import AlphaSweep, sweep_alpha, write_alpha, write_sweep
    from cdlm.model.tagger import Tagger
    from cdlm.provenance import stamp

    model = Tagger.load(checkpoint)
    try:
        alphas = (
            [float(a) for a in grid.split(",")] if grid else list(model.config.causal.alpha_grid)
        )
    except ValueError:
        raise ConfigError(f"--grid {grid!r}: expected comma-separated numbers") from None
    if not alphas or any(a < 0 for a in alphas):
        raise ConfigError(f"--grid {grid!r}: expected one or more alphas >= 0")
    target = model.config.train.target
    if target is None:
        raise ConfigError(f"{checkpoint}: the checkpoint names no target domain")
    best, points, _ = sweep_alpha(model, load_split(target, "dev", data_dir), alphas)
    if write:
        write_alpha(checkpoint, best)
    result = AlphaSweep(
        domain=domain_name(target),
        variant=model.config.train.variant,
        seed=model.config.train.seed,
        checkpoint=str(checkpoint),
        best_alpha=best,
        sweep=points,
        written=write,
        provenance=stamp(seed=model.config.train.seed, config=model.config.model_dump(mode="json")),
    )
    for p in points:
        mark = "  <- best" if p.alpha == best else ""
        print(f"alpha {p.alpha:g}: dev F1 {100 * p.dev_f1:.2f}{mark}")
    print(
        f"wrote {write_sweep(result)}"
        + (f"; alpha {best:g} stored in {checkpoint}" if write else "")
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command()(probe)
    app.command("tune-alpha")(tune_alpha)
