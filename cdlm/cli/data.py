"""``cdlm data``: download, check, convert and summarise datasets, BIO or span JSON Lines
(registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from cdlm.cli.options import old_output_option, output_option, pick_output
from cdlm.errors import DataError

data_app = typer.Typer(
    name="data",
    help="CrossNER and other datasets (BIO or span JSONL): download, check, convert, stats.",
    no_args_is_help=True,
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with <domain>/{train,dev,test}.txt or .jsonl (default: $CDLM_DATA_DIR, "
        "the user cache, then ../shared/data/crossner beside the checkout). The paper's "
        "datasets (mit-movie etc.): <dir>/<name> if there, else $CDLM_DATA_DIR/<name>, else "
        "the user cache of their download.",
    ),
]


def _entity_counts(sentences) -> Counter[str]:
    from cdlm.data.spans import bio_spans

    return Counter(etype for sent in sentences for _, _, etype in bio_spans(sent.tags))


@data_app.command("download")
def download(
    dataset: Annotated[
        str,
        typer.Argument(
            help="crossner, one of the paper's datasets (mit-movie, mit-restaurant, bionlp13cg, "
            "bionlp13pc) or paper (all four)."
        ),
    ],
    output: Annotated[
        Path | None,
        output_option("Destination folder (default: the user cache, found automatically)."),
    ] = None,
    dest: Annotated[Path | None, old_output_option("--dest")] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Mirror serving the repository's files at their paths, e.g. "
            "ner_data/<domain>/<split>.txt for CrossNER (default: GitHub, pinned commit)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Download even files that are already valid.")
    ] = False,
    retries: Annotated[int, typer.Option(min=1, help="Tries per file on network errors.")] = 4,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
) -> None:
    """Download CrossNER or the paper's other datasets (checksums verified, converted to IOB2).

    CrossNER: the labelled splits (18 files). The paper's datasets are converted to strict
    IOB2 train/dev/test.txt, repairs reported."""
    dest = pick_output(output, dest, "--dest")
    from cdlm.data.download import CROSSNER_BASE_URL, download_crossner
    from cdlm.data.paper import ALL
    from cdlm.data.registry import PAPER_DATASETS, user_cache_dir

    name = dataset.lower()
    if name == ALL or name in PAPER_DATASETS:
        names = PAPER_DATASETS if name == ALL else (name,)
        _download_paper(
            names, dest, base_url=base_url, force=force, retries=retries, timeout=timeout
        )
        return
    if name != "crossner":
        raise DataError(
            f"unknown dataset {dataset!r}: expected crossner, {', '.join(PAPER_DATASETS)} "
            f"or {ALL} (all four)"
        )
    report = download_crossner(
        dest, base_url=base_url or CROSSNER_BASE_URL, force=force, retries=retries, timeout=timeout
    )
    print(
        f"CrossNER in {report.dest}: {len(report.downloaded)} files downloaded, "
        f"{len(report.skipped)} already present (checksums verified)"
    )
    if dest is not None and report.dest.resolve() != user_cache_dir().resolve():
        print(f"use it with --data-dir {report.dest} or CDLM_DATA_DIR={report.dest}")


def _download_paper(names, dest: Path | None, **fetch) -> None:
    """The paper's datasets ``names``, each downloaded and converted, reported per dataset."""
    from cdlm.data.paper import download as download_paper
    from cdlm.data.registry import paper_cache_dir

    for each in names:
        report, conversion = download_paper(each, dest, **fetch)
        print(
            f"{conversion.title} in {report.dest / each}: {len(report.downloaded)} files "
            f"downloaded, {len(report.skipped)} already present (checksums verified)"
        )
        for line in conversion.lines():
            print(f"  {line}")
    if dest is not None and report.dest.resolve() != paper_cache_dir().resolve():
        print(f"use it with --data-dir {report.dest} or CDLM_DATA_DIR={report.dest}")


@data_app.command("check")
def check(
    path: Annotated[
        Path,
        typer.Argument(
            help="A BIO file (.txt/.bio/.conll: token<TAB>tag or token<SPACE>tag) or a span "
            "JSON Lines file (.jsonl)."
        ),
    ],
    repair: Annotated[
        bool, typer.Option(help="BIO only: turn an I- that starts an entity into B- (counted).")
    ] = False,
    output: Annotated[
        Path | None, output_option("Write the (repaired) sentences here (.txt BIO or .jsonl).")
    ] = None,
    out: Annotated[Path | None, old_output_option("--out")] = None,
) -> None:
    """Validate a BIO or span JSONL file; print sentence, token and entity counts per type."""
    out = pick_output(output, out, "--out")
    from rich.console import Console
    from rich.table import Table

    from cdlm.data.formats import read_sentences, write_sentences

    result = read_sentences(path, repair=repair)
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
    if path.stem in ("train", "dev", "test"):  # a split of a converted paper dataset?
        from cdlm.data.paper import record_lines

        for line in record_lines(path.parent):
            print(line)
    if counts:
        table = Table("type", "entities")
        for etype in sorted(counts):
            table.add_row(etype, str(counts[etype]))
        console.print(table)
    if out is not None:
        write_sentences(out, sentences)
        print(f"wrote {out}")


@data_app.command("convert")
def convert(
    src: Annotated[Path, typer.Argument(metavar="IN", help="BIO (.txt/.bio/.conll) or .jsonl.")],
    dst: Annotated[Path, typer.Argument(metavar="OUT", help="The file to write.")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="bio or jsonl (default: from OUT's extension, else the other format)."
        ),
    ] = None,
    repair: Annotated[
        bool, typer.Option(help="BIO input: turn an I- that starts an entity into B-.")
    ] = False,
) -> None:
    """Convert a dataset file between BIO and span JSON Lines (validated, written atomically).

    The whole input is validated before OUT is written. BIO -> JSONL: the text is the tokens
    joined by single spaces, and the tokens are written too, so JSONL -> BIO gives back the
    same tokens. JSONL -> BIO: a record's own tokens, else the tokenizer `cdlm predict`
    uses."""
    from cdlm.data.formats import FORMATS, file_format, read_sentences, write_sentences

    if to is not None and to not in FORMATS:
        raise DataError(f"--to: expected one of {', '.join(FORMATS)}, got {to!r}")
    fmt_in = file_format(src)
    if fmt_in is None and to is not None:
        fmt_in = "jsonl" if to == "bio" else "bio"
    if fmt_in is None:
        raise DataError(
            f"{src}: cannot tell BIO (.txt/.bio/.conll) from JSONL (.jsonl) by the extension; "
            "rename it or pass --to"
        )
    fmt_out = to or file_format(dst) or ("jsonl" if fmt_in == "bio" else "bio")
    if fmt_out == fmt_in:
        raise DataError(
            f"{src} and {dst} are both {fmt_in}: nothing to convert "
            "(`cdlm data check IN --out OUT` copies a validated file)"
        )
    sentences = read_sentences(src, repair=repair, fmt=fmt_in).sentences
    write_sentences(dst, sentences, fmt=fmt_out)
    entities = sum(_entity_counts(sentences).values())
    how = " (text = tokens joined by single spaces)" if fmt_out == "jsonl" else ""
    print(f"wrote {dst}: {len(sentences)} sentences, {entities} entities, {fmt_out}{how}")


@data_app.command("stats")
def stats(
    domain: Annotated[
        str,
        typer.Argument(
            help="CrossNER domain name, a paper dataset name (mit-movie, mit-restaurant, "
            "bionlp13cg, bionlp13pc) or a dataset folder."
        ),
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Sentences, tokens and entities per split, and entities per type and split."""
    from rich.console import Console
    from rich.table import Table

    from cdlm.data.registry import domain_dir, domain_name, load_split, present_splits

    folder = domain_dir(domain, data_dir)
    splits = present_splits(folder)
    if not splits:
        raise DataError(f"{folder}: no train/dev/test .txt or .jsonl files in this folder")
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
    from cdlm.data.paper import record_lines

    for line in record_lines(folder):  # how a downloaded paper dataset was converted
        print(line)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(data_app, name="data")
