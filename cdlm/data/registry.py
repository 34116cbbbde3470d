"""Where the CrossNER data lives and how a domain name becomes sentences and labels.

The data folder is the first of (1) ``--data-dir``, (2) ``$CDLM_DATA_DIR``, (3) the user cache
folder that ``cdlm data download crossner`` fills, (4) ``../shared/data/crossner`` beside the
checkout (tests, CI). A folder counts when it holds at least one domain sub-folder. An explicit
``--data-dir`` or ``$CDLM_DATA_DIR`` that holds none is an error rather than silently skipped:
the user asked for that folder, and quietly reading another dataset would be worse.

A "domain" is a CrossNER name (``DOMAINS``) or the path of any folder with
``train.txt``/``dev.txt``/``test.txt`` in BIO format, so every command works on any BIO dataset.
Label sets always come from the data (union of the splits), never from a hard-coded list.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cdlm.data.bio import Sentence, bio_labels, entity_types, read_bio
from cdlm.errors import DataError

DOMAINS = ("conll2003", "politics", "science", "music", "literature", "ai")
SPLITS = ("train", "dev", "test")
ENV_VAR = "CDLM_DATA_DIR"


def user_cache_dir() -> Path:
    """The per-user folder ``cdlm data download crossner`` writes to."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("cdlm")) / "crossner"


def checkout_data_dir() -> Path:
    """``../shared/data/crossner`` beside the checkout (the layout tests and CI use)."""
    checkout = Path(__file__).resolve().parents[2]  # cdlm/data/registry.py -> the checkout
    return checkout.parent / "shared" / "data" / "crossner"


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
    """The folder holding ``domain``'s split files (a CrossNER name or a dataset folder path)."""
    if domain in DOMAINS:
        folder = find_data_dir(data_dir) / domain
        if not folder.is_dir():
            raise DataError(
                f"{folder}: domain {domain!r} is missing; run `cdlm data download crossner`"
            )
        return folder
    folder = Path(domain).expanduser()
    if folder.is_dir():
        return folder
    raise DataError(
        f"unknown domain {domain!r}: expected one of {', '.join(DOMAINS)} "
        "or a folder with train.txt/dev.txt/test.txt"
    )


def domain_name(domain: str) -> str:
    """A short display name: the CrossNER name, or the dataset folder's name."""
    return domain if domain in DOMAINS else Path(domain).expanduser().resolve().name


def split_path(domain: str, split: str, data_dir: Path | str | None = None) -> Path:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return domain_dir(domain, data_dir) / f"{split}.txt"


@functools.lru_cache(maxsize=32)
def _read_cached(path: Path, mtime_ns: int, size: int) -> tuple[Sentence, ...]:
    # Keyed on mtime and size so an edited file is read again; CoNLL train takes ~1 s to parse.
    return tuple(read_bio(path))


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
    present = [s for s in SPLITS if (folder / f"{s}.txt").is_file()]
    if not present:
        raise DataError(f"{folder}: no {'/'.join(s + '.txt' for s in SPLITS)} in this folder")
    sentences = [sent for s in present for sent in load_split(str(folder), s)]
    return bio_labels(entity_types(sentences))
