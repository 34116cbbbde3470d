"""``cdlm data``: download, check and summarise BIO datasets (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from cdlm.errors import DataError

data_app = typer.Typer(
    name="data",
    help="CrossNER and other BIO datasets: download, check, stats.",
    no_args_is_help=True,
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with <domain>/{train,dev,test}.txt (default: $CDLM_DATA_DIR, the user "
        "cache, then ../shared/data/crossner beside the checkout).",
    ),
]


def _entity_counts(sentences) -> Counter[str]:
    from cdlm.data.spans import bio_spans

    return Counter(etype for sent in sentences for _, _, etype in bio_spans(sent.tags))


@data_app.command("download")
def download(
    dataset: Annotated[str, typer.Argument(help="Dataset to fetch; only 'crossner' for now.")],
    dest: Annotated[
        Path | None,
        typer.Option(help="Destination folder (default: the user cache, found automatically)."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Mirror serving ner_data/<domain>/<split>.txt (default: GitHub, pinned)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Download even files that are already valid.")
    ] = False,
    retries: Annotated[int, typer.Option(min=1, help="Tries per file on network errors.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
) -> None:
    """Fetch the labelled CrossNER splits (18 files, checksums verified)."""
    from cdlm.data.download import CROSSNER_BASE_URL, download_crossner
    from cdlm.data.registry import user_cache_dir

    if dataset.lower() != "crossner":
        raise DataError(f"unknown dataset {dataset!r}: only 'crossner' can be downloaded")
    report = download_crossner(
        dest, base_url=base_url or CROSSNER_BASE_URL, force=force, retries=retries, timeout=timeout
    )
    print(
        f"CrossNER in {report.dest}: {len(report.downloaded)} files downloaded, "
        f"{len(report.skipped)} already present (checksums verified)"
    )
    if dest is not None and report.dest.resolve() != user_cache_dir().resolve():
        print(f"use it with --data-dir {report.dest} or CDLM_DATA_DIR={report.dest}")


@data_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="A BIO file (token<TAB>tag or token<SPACE>tag).")],
    repair: Annotated[
        bool, typer.Option(help="Turn an I- that starts an entity into B- (counted).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the (repaired) sentences to this BIO file.")
    ] = None,
) -> None:
    """Validate a BIO file; print sentence, token and entity counts per type."""
    from rich.console import Console
    from rich.table import Table

    from cdlm.data.bio import read_bio_file, write_bio

    result = read_bio_file(path, repair=repair)
    sentences = result.sentences
    counts = _entity_counts(sentences)
    console = Console()
    print(
        f"{path}: OK, {len(sentences)} sentences, {sum(len(s.tokens) for s in sentences)} tokens, "
        f"{sum(counts.values())} entities of {len(counts)} types"
    )
    if result.repaired:
        shown = ", ".join(str(n) for n in result.repaired[:10])
        more = ", ..." if len(result.repaired) > 10 else ""
        print(f"repaired {len(result.repaired)} I- tags to B- (lines {shown}{more})")
    if counts:
        table = Table("type", "entities")
        for etype in sorted(counts):
            table.add_row(etype, str(counts[etype]))
        console.print(table)
    if out is not None:
        write_bio(out, sentences)
        print(f"wrote {out}")


@data_app.command("stats")
def stats(
    domain: Annotated[str, typer.Argument(help="CrossNER domain name or a dataset folder.")],
    data_dir: DataDirOption = None,
) -> None:
    """Sentences, tokens and entities per split, and entities per type and split."""
    from rich.console import Console
    from rich.table import Table

    from cdlm.data.registry import SPLITS, domain_dir, domain_name, load_split

    folder = domain_dir(domain, data_dir)
    splits = [s for s in SPLITS if (folder / f"{s}.txt").is_file()]
    if not splits:
        raise DataError(f"{folder}: no train.txt/dev.txt/test.txt in this folder")
    per_split = {s: load_split(str(folder), s) for s in splits}
    counts = {s: _entity_counts(sents) for s, sents in per_split.items()}

    console = Console()
    summary = Table("split", "sentences", "tokens", "entities", "types", title=domain_name(domain))
    for s, sents in per_split.items():
        summary.add_row(
            s,
            str(len(sents)),
            str(sum(len(x.tokens) for x in sents)),
            str(sum(counts[s].values())),
            str(len(counts[s])),
        )
    console.print(summary)
    by_type = Table("type", *splits, title="entities per type")
    for etype in sorted(set().union(*counts.values())):
        by_type.add_row(etype, *(str(counts[s][etype]) for s in splits))
    console.print(by_type)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(data_app, name="data")
