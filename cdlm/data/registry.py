"""Where the data lives (CrossNER and the paper's other datasets) and how a domain name becomes
sentences and labels.

The data folder is the first of (1) ``--data-dir``, (2) ``$CDLM_DATA_DIR``, (3) the user cache
folder that ``cdlm data download crossner`` fills, (4) ``../shared/data/crossner`` beside the
checkout (tests, CI). A folder counts when it holds at least one domain sub-folder. An explicit
``--data-dir`` or ``$CDLM_DATA_DIR`` that holds none is an error rather than silently skipped:
the user asked for that folder, and quietly reading another dataset would be worse.

A "domain" is a CrossNER name (``DOMAINS``) or the path of any folder with
``train``/``dev``/``test`` split files, each either BIO (``<split>.txt``) or span JSON Lines
(``<split>.jsonl``, :mod:`cdlm.data.jsonl`), so every command works on any such dataset. A split
given in both formats is an error (which one was meant is not ours to guess). Label sets always
come from the data (union of the splits), never from a hard-coded list.

The CDLM paper's other datasets (``PAPER_DATASETS``: MIT Movie, MIT Restaurant, BioNLP13CG,
BioNLP13PC; :mod:`cdlm.data.paper`) are names too, each a folder ``<root>/<name>/`` that
``cdlm data download <name>`` fills with strict IOB2 ``train``/``dev``/``test.txt``. The roots
searched, in order: ``--data-dir``, ``$CDLM_DATA_DIR``, then :func:`paper_cache_dir` (the
download's default). A root without that folder is passed over, not an error: ``--data-dir`` and
``$CDLM_DATA_DIR`` usually name the CrossNER folder, and every copy of a paper dataset is the
same pinned, checksum-verified download. ``../shared/data/paper`` beside the checkout is NOT
searched: it holds the upstream files in their native formats, which only the download's
conversion reads (tests build a local download mirror from it instead).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cdlm.data.bio import Sentence, bio_labels, entity_types
from cdlm.errors import DataError

DOMAINS = ("conll2003", "politics", "science", "music", "literature", "ai")
SPLITS = ("train", "dev", "test")
SPLIT_SUFFIXES = (".txt", ".jsonl")  # BIO or span JSON Lines, see cdlm.data.formats
ENV_VAR = "CDLM_DATA_DIR"
# The paper's other datasets, by the name that selects them (table: cdlm.data.paper.DATASETS).
PAPER_DATASETS = ("mit-movie", "mit-restaurant", "bionlp13cg", "bionlp13pc")


def user_cache_dir() -> Path:
    """The per-user folder ``cdlm data download crossner`` writes to."""
    from cdlm.config import cache_home

    return cache_home() / "crossner"


def checkout_data_dir() -> Path:
    """``../shared/data/crossner`` beside the checkout (the layout tests and CI use)."""
    checkout = Path(__file__).resolve().parents[2]  # cdlm/data/registry.py -> the checkout
    return checkout.parent / "shared" / "data" / "crossner"


def paper_cache_dir() -> Path:
    """The per-user folder ``cdlm data download <paper dataset>`` writes to (one sub-folder per
    dataset); apart from CrossNER's so that folder stays exactly what it was."""
    from cdlm.config import cache_home

    return cache_home() / "paper"


def _is_converted(folder: Path) -> bool:
    """A paper dataset folder counts once all three splits are there (a half-finished
    conversion does not)."""
    return folder.is_dir() and all(folder_split_file(folder, s) is not None for s in SPLITS)


def paper_dataset_dir(name: str, data_dir: Path | str | None = None) -> Path:
    """The folder of paper dataset ``name`` (see the module docstring for the search order)."""
    roots = [data_dir, os.environ.get(ENV_VAR) or None, paper_cache_dir()]
    tried = [Path(root).expanduser() / name for root in roots if root is not None]
    for folder in tried:
        if _is_converted(folder):
            return folder
    raise DataError(
        f"{name} data not found (tried {', '.join(str(p) for p in tried)}); "
        f"run `cdlm data download {name}`"
    )


def _has_domains(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in DOMAINS)


def find_data_dir(data_dir: Path | str | None = None) -> Path:
    """The CrossNER data folder (see the module docstring for the search order)."""
    explicit = [("--data-dir", data_dir), (f"${ENV_VAR}", os.environ.get(ENV_VAR) or None)]
    for what, value in explicit:
        if value is not None:
            folder = Path(value).expanduser()
            if not _has_domains(folder):
                raise DataError(
                    f"{folder}: {what} has no CrossNER domain folders ({', '.join(DOMAINS)}); "
                    "run `cdlm data download crossner --dest DIR` or point it elsewhere"
                )
            return folder
    tried = [user_cache_dir(), checkout_data_dir()]
    for folder in tried:
        if _has_domains(folder):
            return folder
    raise DataError(
        "CrossNER data not found (tried --data-dir, "
        f"${ENV_VAR}, {', '.join(str(p) for p in tried)}); run `cdlm data download crossner`"
    )


def domain_dir(domain: str, data_dir: Path | str | None = None) -> Path:
    """The folder holding ``domain``'s split files (a CrossNER or paper dataset name, or a dataset
    folder path)."""
    if domain in DOMAINS:
        folder = find_data_dir(data_dir) / domain
        if not folder.is_dir():
            raise DataError(
                f"{folder}: domain {domain!r} is missing; run `cdlm data download crossner`"
            )
        return folder
    if domain in PAPER_DATASETS:
        return paper_dataset_dir(domain, data_dir)
    folder = Path(domain).expanduser()
    if folder.is_dir():
        return folder
    raise DataError(
        f"unknown domain {domain!r}: expected one of {', '.join(DOMAINS + PAPER_DATASETS)} "
        "or a folder with train/dev/test .txt (BIO) or .jsonl (span JSON Lines) files"
    )


def domain_name(domain: str) -> str:
    """A short display name: the CrossNER name, or the dataset folder's name."""
    return domain if domain in DOMAINS else Path(domain).expanduser().resolve().name


def folder_split_file(folder: Path, split: str) -> Path | None:
    """The file of ``split`` in a dataset folder (``.txt`` or ``.jsonl``), ``None`` if neither
    exists; both existing is an error naming both."""
    found = [folder / f"{split}{suffix}" for suffix in SPLIT_SUFFIXES]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise DataError(
            f"{found[0]} and {found[1]}: split {split!r} exists in both formats; "
            "remove or rename one"
        )
    return found[0] if found else None


def present_splits(folder: Path) -> list[str]:
    """The splits a dataset folder holds, in ``SPLITS`` order."""
    return [s for s in SPLITS if folder_split_file(folder, s) is not None]


def split_path(domain: str, split: str, data_dir: Path | str | None = None) -> Path:
    """The file of one split (BIO ``.txt`` or ``.jsonl``; the ``.txt`` name when neither
    exists, so "file not found" names the usual one)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    folder = domain_dir(domain, data_dir)
    return folder_split_file(folder, split) or folder / f"{split}.txt"


@functools.lru_cache(maxsize=32)
def _read_cached(path: Path, mtime_ns: int, size: int) -> tuple[Sentence, ...]:
    # Keyed on mtime and size so an edited file is read again; CoNLL train takes ~1 s to parse.
    from cdlm.data.formats import read_sentences

    return tuple(read_sentences(path).sentences)


def load_split(domain: str, split: str, data_dir: Path | str | None = None) -> list[Sentence]:
    """Sentences of one split (strict IOB2 reading; a malformed file is a ``DataError``)."""
    path = split_path(domain, split, data_dir).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (split {split!r} of {domain!r})") from None
    return list(_read_cached(path, stat.st_mtime_ns, stat.st_size))


def domain_labels(domain: str, data_dir: Path | str | None = None) -> list[str]:
    """BIO labels of a domain, ``["O", "B-t1", "I-t1", ...]`` with types sorted, from the union
    of its splits (a type seen only in dev/test still gets a label). Splits that do not exist
    in a custom dataset folder are skipped; at least one must exist."""
    folder = domain_dir(domain, data_dir)
    present = present_splits(folder)
    if not present:
        raise DataError(f"{folder}: no train/dev/test .txt or .jsonl files in this folder")
    sentences = [sent for s in present for sent in load_split(str(folder), s)]
    return bio_labels(entity_types(sentences))
