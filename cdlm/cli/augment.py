"""``cdlm augment``: FactMix semi-facts of a target training set, written as BIO + sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdlm.cli.options import DataDirOption, old_output_option, output_option, pick_output


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.command(name="augment")(augment)


TargetOption = Annotated[
    str,
    typer.Option(
        "--target",
        help="Target domain (CrossNER name or a BIO folder); its train split is augmented.",
    ),
]
AugmentOutputOption = Annotated[
    Path | None,
    output_option(
        "Output BIO file (required); FILE.jsonl (sidecar) and FILE.summary.json are written "
        "beside it."
    ),
]
FilterOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        help="Tagger trained on the original data: keep only semi-facts it tags perfectly. "
        "Without it nothing is filtered.",
    ),
]
EntityRatioOption = Annotated[
    int | None,
    typer.Option(
        "--entity-ratio",
        help="Max entity-level semi-facts per sentence (default: augment.entity_ratio = 4)",
    ),
]
ContextRatioOption = Annotated[
    int | None,
    typer.Option(
        "--context-ratio",
        help="Max context-level semi-facts per sentence (default: augment.context_ratio = 1)",
    ),
]
SeedOption = Annotated[
    int | None, typer.Option("--seed", help="Random seed (default: config augment.seed = 1)")
]
MLMOption = Annotated[
    str | None,
    typer.Option(
        "--mlm",
        help="Hugging Face fill-mask model (name or path, e.g. bert-base-cased) for context "
        "words; default: the embedded SmolLM2 asked for one word.",
    ),
]
ExtraBaseOption = Annotated[
    str | None,
    typer.Option(
        "--extra-base",
        help="Domain whose train entities join the entity base for shared types (few-shot "
        "setting), e.g. conll2003.",
    ),
]


def augment(
    target: TargetOption,
    output: AugmentOutputOption = None,
    checkpoint: FilterOption = None,
    entity_ratio: EntityRatioOption = None,
    context_ratio: ContextRatioOption = None,
    seed: SeedOption = None,
    mlm: MLMOption = None,
    extra_base: ExtraBaseOption = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
    data_dir: DataDirOption = None,
    out: Annotated[Path | None, old_output_option("--out")] = None,
) -> None:
    """Generate FactMix entity- and context-level semi-facts for a target training set."""
    out = pick_output(output, out, "--out")
    if out is None:
        from cdlm.errors import ConfigError

        raise ConfigError("--output: the output BIO file is required")
    from rich.console import Console

    from cdlm.augment.pipeline import summary_path, write_augmented
    from cdlm.config import load_config
    from cdlm.provenance import stamp

    cfg = load_config(
        config,
        {
            "augment.entity_ratio": entity_ratio,
            "augment.context_ratio": context_ratio,
            "augment.seed": seed,
            "augment.mlm": mlm,
            "augment.extra_base": extra_base,
        },
    )
    console = Console(stderr=True, emoji=False, markup=False, highlight=False)
    aug = _semi_facts(cfg, target, checkpoint, data_dir, console)
    write_augmented(out, aug, stamp(config=cfg.model_dump(mode="json"), target=target))
    _report(console, aug.stats, out, summary_path(out))


def _semi_facts(cfg, target: str, checkpoint: Path | None, data_dir: Path | None, console):
    """FactMix over the target's train split (cfg: CdlmConfig), filtered by the tagger at
    ``checkpoint`` if given, with a progress bar on ``console``."""
    from rich.progress import Progress

    from cdlm.augment.pipeline import factmix, make_filler
    from cdlm.data.registry import load_split

    acfg = cfg.augment
    originals = load_split(target, "train", data_dir)
    extra = load_split(acfg.extra_base, "train", data_dir) if acfg.extra_base else None
    tagger = _filter_tagger(checkpoint, originals, console)
    filler = make_filler(cfg) if acfg.context_ratio else None
    with Progress(console=console, transient=True) as progress:

        def track(items, description, total):
            return progress.track(items, total=total, description=description)

        return factmix(
            originals,
            acfg,
            filler=filler,
            tagger=tagger,
            extra=extra,
            filter_name=str(checkpoint) if checkpoint else None,
            track=track,
        )


def _filter_tagger(checkpoint: Path | None, originals, console):  # -> Tagger | None
    """The filter tagger (or None, said on ``console``); warns about types it cannot tag."""
    if checkpoint is None:
        console.print("note: no --checkpoint, so the semi-facts are NOT filtered")
        return None
    from cdlm.data.bio import entity_types
    from cdlm.data.spans import label_types
    from cdlm.model.tagger import Tagger

    tagger = Tagger.load(checkpoint)
    unknown = sorted(set(entity_types(originals)) - set(label_types(tagger.labels)))
    if unknown:
        console.print(
            f"warning: {checkpoint} has no label for {', '.join(unknown)}: the filter drops "
            "every semi-fact containing them (use a tagger trained on this target)"
        )
    return tagger


def _report(console, stats, out: Path, summary: Path) -> None:
    from rich.table import Table

    table = Table(title=f"FactMix semi-facts of {stats.originals} sentences")
    for col in ("kind", "max/sentence", "generated", "kept by filter", "origins short"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    for kind, ratio, ks in (
        ("entity", stats.entity_ratio, stats.entity),
        ("context", stats.context_ratio, stats.context),
    ):
        kept = str(ks.kept) if stats.filter else "(no filter)"
        table.add_row(kind, str(ratio), str(ks.generated), kept, str(ks.short))
    console.print(table)
    if not stats.entity_base:
        console.print(
            "warning: empty entity base (no entities in the training set): "
            "no entity-level semi-facts"
        )
    if stats.sentences_without_entities:
        console.print(f"{stats.sentences_without_entities} sentences have no entity to swap")
    for etype, n in stats.no_alternative.items():
        console.print(f"type {etype!r} has no alternative mention: {n} spans not swapped")
    if stats.context_ratio:
        console.print(
            f"context filler {stats.filler}: {stats.fills_requested} fills, "
            f"{stats.fills_unusable} unusable, {stats.filler_fallbacks} LLM fallbacks; "
            f"{stats.sentences_without_words} sentences without a word to re-fill"
        )
    console.print(f"wrote {out}, {out.name}.jsonl and {summary.name}")
