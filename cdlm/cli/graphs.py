"""``cdlm graphs``: build, inspect and draw label graphs (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdlm.cli.options import old_output_option, output_option, pick_output
from cdlm.errors import ConfigError

graphs_app = typer.Typer(
    name="graphs",
    help="Label distributions and label graphs (source tagger -> target label set).",
    no_args_is_help=True,
)


TargetsOption = Annotated[
    list[str],
    typer.Option(
        "--target", help="Target domain (CrossNER name or BIO folder); repeat for several."
    ),
]
SourceOption = Annotated[
    str, typer.Option("--source", help="Source domain the tagger was trained on.")
]
SourceCheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Source tagger checkpoint (default: the cached source pre-training for this "
        "config; trained first if missing).",
    ),
]
TauOption = Annotated[
    float | None,
    typer.Option("--tau", help="Temperature (fusion.tau; default: the entropy rule)."),
]
ThetaOption = Annotated[
    float | None,
    typer.Option("--theta", help="Edge threshold (fusion.theta; default: the edge-density rule)."),
]
GraphOutputOption = Annotated[
    Path | None,
    output_option("Output JSON for one target (default: <graphs_dir>/<source>__<target>.json)."),
]


@graphs_app.command("build")
def build(
    target: TargetsOption,
    source: SourceOption = "conll2003",
    checkpoint: SourceCheckpointOption = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    tau: TauOption = None,
    theta: ThetaOption = None,
    output: GraphOutputOption = None,
    out: Annotated[Path | None, old_output_option("--out")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="CrossNER data folder.")] = None,
    runs_dir: Annotated[Path | None, typer.Option(help="Runs folder (source cache).")] = None,
) -> None:
    """Build label graphs: the source tagger over source and target data gives P, Q, graphs.

    Source data: its fusion.q_split; target data: its train split. Several ``--target`` share
    one pass of the tagger over the source data."""
    from cdlm.config import load_config
    from cdlm.data.registry import domain_name
    from cdlm.graphs import graph_path, graphs_from_tagger, source_probabilities
    from cdlm.provenance import stamp

    out = pick_output(output, out, "--out")
    if out is not None and len(target) > 1:
        raise ConfigError("--output: give a single --target with --output")
    cfg = load_config(config, {"fusion.tau": tau, "fusion.theta": theta, "train.source": source})
    tagger, checkpoint = _source_tagger(cfg, checkpoint, data_dir, runs_dir)
    src_probs = source_probabilities(tagger, cfg, source, data_dir)
    for name in target:
        graphs = graphs_from_tagger(
            tagger,
            cfg,
            source=source,
            target=name,
            checkpoint=checkpoint,
            progress=True,
            data_dir=data_dir,
            source_probs=src_probs,
        )
        graphs.params["provenance"] = stamp()
        path = out or graph_path(cfg.fusion.graphs_dir, domain_name(source), domain_name(name))
        graphs.save(path)
        _summary(graphs)
        print(f"wrote {path}")


def _source_tagger(cfg, checkpoint: Path | None, data_dir: Path | None, runs_dir: Path | None):
    """The source tagger and its folder: ``checkpoint``, else the cached source pre-training
    of ``cfg`` (a CdlmConfig; trained first if missing)."""
    from cdlm.model.tagger import Tagger

    if checkpoint is not None:
        return Tagger.load(checkpoint), checkpoint
    from cdlm.experiments.train import pretrain_source

    tagger, checkpoint, _, _ = pretrain_source(cfg, data_dir, runs_dir)
    if tagger is None or checkpoint is None:
        raise ConfigError(
            "train.source_epochs: is 0, so there is no source model; pass --checkpoint"
        )
    return tagger, checkpoint


@graphs_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A graph file written by `cdlm graphs build`.")],
    output: Annotated[Path | None, output_option("Draw the graphs into this PNG.")] = None,
    out: Annotated[Path | None, old_output_option("--out")] = None,
    theta: Annotated[
        float | None, typer.Option(help="Redraw the edges for another threshold.")
    ] = None,
) -> None:
    """Print a summary (tags, token counts, closest source tag, edges); draw a PNG with --output."""
    out = pick_output(output, out, "--out")
    from cdlm.graphs import LabelGraphs, draw

    graphs = LabelGraphs.load(file)
    if theta is not None:
        graphs = graphs.with_theta(theta)
    _summary(graphs)
    if out is not None:
        draw(graphs, out)
        print(f"wrote {out}")


def _summary(graphs) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{graphs.source} -> {graphs.target}  (params {_params(graphs)})")
    for col in ("target tag", "tokens", "top source tags (P)", "neighbours (weight)"):
        table.add_column(col)
    neighbours: dict[int, list[str]] = {i: [] for i in range(len(graphs.target_tags))}
    for a, b, w in sorted(graphs.target_edges, key=lambda e: -e[2]):
        neighbours[a].append(f"{graphs.target_tags[b]} {w:.2f}")
        neighbours[b].append(f"{graphs.target_tags[a]} {w:.2f}")
    for i, tag in enumerate(graphs.target_tags):
        row = graphs.P[i]
        top = sorted(range(len(row)), key=lambda j: -row[j])[:2]
        table.add_row(
            tag,
            str(graphs.target_counts[i]),
            ", ".join(f"{graphs.source_tags[j]} {row[j]:.2f}" for j in top),
            ", ".join(neighbours[i][:4]) + (" ..." if len(neighbours[i]) > 4 else ""),
        )
    console = Console()
    console.print(table)
    console.print(
        f"source graph: {len(graphs.source_tags)} tags, {len(graphs.source_edges)} edges; "
        f"target graph: {len(graphs.target_tags)} tags, {len(graphs.target_edges)} edges"
    )
    for side, tags in graphs.unseen.items():
        if tags:
            console.print(f"[yellow]{side} tags with no tokens (uniform row): {', '.join(tags)}")


def _params(graphs) -> str:
    keep = (
        "tau",
        "theta_source",
        "theta_target",
        "edge_density",
        "q_split",
        "source_sentences",
        "target_sentences",
    )
    return ", ".join(f"{k}={graphs.params[k]}" for k in keep if k in graphs.params)


def register(app: typer.Typer) -> None:
    """Add ``cdlm graphs build|show``."""
    app.add_typer(graphs_app)
