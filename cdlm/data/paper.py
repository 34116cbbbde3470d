"""The CDLM paper's other four datasets: MIT Movie, MIT Restaurant, BioNLP13CG, BioNLP13PC.

``cdlm data download NAME`` (or ``paper`` for all four) fetches the upstream files from a pinned
commit (:mod:`cdlm.data.download`, checksums and sizes below) into ``<dest>/<name>/raw/`` and
converts them, on download, into the layout every cdlm command reads: ``<dest>/<name>/`` with
``train.txt``, ``dev.txt`` and ``test.txt`` in strict IOB2 (``token<TAB>tag``, see
:mod:`cdlm.data.bio`), found by name through :mod:`cdlm.data.registry`. The tags are kept as the
data spells them (``ACTOR``, ``Restaurant_Name``, ``Gene_or_gene_product``): label sets come
from the data, and the label descriptions in ``cdlm/prompts/labels/<name>.toml`` use the same
names.

Native formats (read strictly: a line that is not exactly ``token<SEP>tag`` with a valid tag is a
``DataError`` naming ``file:line``, never skipped):

- MIT Movie (``engtrain.bio.txt``, ``engtest.bio.txt``): ``token<TAB>tag``, IOB2.
- MIT Restaurant (``train.txt``, ``test.txt``): ``token<SPACE>tag``, IOB2 (a token with a space
  would give three columns and is refused, not cut).
- BioNLP13CG/PC (``train.tsv``, ``devel.tsv``, ``test.tsv``): ``token<TAB>tag``, IOB.

The one repair: an ``I-X`` that starts an entity becomes ``B-X``, counted per kind
(``REPAIR_KINDS``: at a sentence start, after ``O``, after another type) and per file. The counts
are printed by the download and kept in ``conversion.json`` beside the splits, which
``cdlm data stats`` and ``cdlm data check`` print, so a repair is never silent. (At the pinned
commits all ten files are valid IOB2: every count is 0.)

Dev split rule, for the datasets without one (the MIT pair): ``DEV_FRACTION`` (10%) of the
upstream train, never of test; the rest is train. Which sentences: ordered by the SHA-256 of
``DEV_SEED`` and the sentence's tokens, the first ones until the share is reached, so the split
is the same on every machine and Python version, and identical texts (MIT Movie's train has a
few) all land on the same side: dev shares no sentence with the new train.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from cdlm.data.bio import DOCSTART, Sentence, entity_types, read_lines, write_bio
from cdlm.data.download import DownloadReport, RemoteFile, Source, fetch
from cdlm.data.registry import PAPER_DATASETS, SPLITS, paper_cache_dir
from cdlm.data.spans import OUTSIDE
from cdlm.errors import DataError
from cdlm.results import atomic_write_text

DEV_FRACTION = 0.1  # share of the upstream train that becomes dev where upstream has no dev
DEV_SEED = 1  # fixed: changing it changes the MIT train/dev splits (and every number on them)
RECORD = "conversion.json"  # what the conversion did, beside the splits
RAW = "raw"  # sub-folder of a dataset folder holding the upstream files as downloaded
ALL = "paper"  # `cdlm data download paper`: all four
REPAIR_KINDS = {
    "start": "I- at sentence start",
    "after_o": "I- after O",
    "after_other": "I- after another type",
}

PROMPTNER = ("pity4yeats/promptner", "728c1c9384e5df2830919c47818bb3757bb1aba9")
MTL_BIO = ("cambridgeltl/MTL-Bioinformatics-2016", "df0df02fae6dbb87d88ffcf323b9096528f06f84")


class Upstream(NamedTuple):
    """One upstream file: the split it feeds, its name, its SHA-256 and size at the commit."""

    split: str
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class PaperDataset:
    """Where one dataset lives upstream and how its files are read."""

    name: str  # the registry name (also the folder and the label file's name)
    title: str
    repo: str
    commit: str
    folder: str  # folder inside the repository
    sep: str  # column separator of the native format
    files: tuple[Upstream, ...]

    def source(self) -> Source:
        """The download table: each file to ``<name>/raw/<file name>``."""
        return Source(
            self.title,
            self.repo,
            self.commit,
            tuple(
                RemoteFile(
                    f"{self.name}/{f.name}",
                    f"{self.folder}/{f.name}",
                    f"{self.name}/{RAW}/{f.name}",
                    f.sha256,
                    f.size,
                )
                for f in self.files
            ),
        )


DATASETS: dict[str, PaperDataset] = {
    d.name: d
    for d in (
        PaperDataset(
            "mit-movie",
            "MIT Movie",
            *PROMPTNER,
            "data/mit-movie",
            "\t",
            (
                Upstream(
                    "train",
                    "engtrain.bio.txt",
                    "f93607ad8851d73e5cded989d845b55c50ded4d92efe69bb967351beb0c5152c",
                    1013490,
                ),
                Upstream(
                    "test",
                    "engtest.bio.txt",
                    "323cf53a00dc8b218052ab1067a040d7e589fbdf6fa6048450dc611ef88f8aee",
                    252634,
                ),
            ),
        ),
        PaperDataset(
            "mit-restaurant",
            "MIT Restaurant",
            *PROMPTNER,
            "data/mit-restaurant",
            " ",
            (
                Upstream(
                    "train",
                    "train.txt",
                    "68f304fdfa377b7a0e5fced686fed72482b8a2ed495e62c52a449a043282d9ab",
                    759755,
                ),
                Upstream(
                    "test",
                    "test.txt",
                    "bf3b4cb56214d3e053a4febf11b8fddeb7f12084aa00a530b5638cd275be75c7",
                    155720,
                ),
            ),
        ),
        PaperDataset(
            "bionlp13cg",
            "BioNLP13CG",
            *MTL_BIO,
            "data/BioNLP13CG-IOB",
            "\t",
            (
                Upstream(
                    "train",
                    "train.tsv",
                    "016ee311428431433c46ceeebeba5fce9c3da9bfd05fafcc484e57a736ea91e7",
                    943120,
                ),
                Upstream(
                    "dev",
                    "devel.tsv",
                    "6c834f3a16ed080940e7e12d831ca8f79458d08db5d6f0c1fdbfe85c3c7a072c",
                    316312,
                ),
                Upstream(
                    "test",
                    "test.tsv",
                    "9ee374ba1b93af177ba3d39dfda4c7e1602bd703d8011bae46a34f3d719cd338",
                    593469,
                ),
            ),
        ),
        PaperDataset(
            "bionlp13pc",
            "BioNLP13PC",
            *MTL_BIO,
            "data/BioNLP13PC-IOB",
            "\t",
            (
                Upstream(
                    "train",
                    "train.tsv",
                    "3bba35afa15be3048240154c9b529e0e4f011f53ed7200b15762f00236e2ab02",
                    801157,
                ),
                Upstream(
                    "dev",
                    "devel.tsv",
                    "e04545457858133fd5c80bef67f7904fc51fa099d119346400477f6bf1d30957",
                    267181,
                ),
                Upstream(
                    "test",
                    "test.tsv",
                    "61bc26bf06a3481adc8ac7032a59e3c71c1ff16ceb81a039b43b4d3e8ae3c06a",
                    532249,
                ),
            ),
        ),
    )
}
assert tuple(DATASETS) == PAPER_DATASETS  # the registry resolves exactly these names


def dataset(name: str) -> PaperDataset:
    """The table of one dataset; an unknown name is a ``DataError`` listing the known ones."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass(frozen=True)
class NativeFile:
    """One upstream file read: its sentences (strict IOB2 after repair) and what was repaired."""

    sentences: list[Sentence]
    repairs: dict[str, int]  # REPAIR_KINDS key -> count (every kind present, 0 included)
    repaired_lines: tuple[int, ...] = ()


def parse_native(lines: Iterable[str], source: str, sep: str) -> NativeFile:
    """Parse ``token<sep>tag`` lines (blank line between sentences) and repair IOB to IOB2."""
    sep_name = "TAB" if sep == "\t" else "SPACE"
    sentences: list[Sentence] = []
    repairs = dict.fromkeys(REPAIR_KINDS, 0)
    repaired: list[int] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(tags), source=source, line=start))
        tokens.clear()
        tags.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            flush()
            continue
        where = f"{source}:{number}"
        cols = line.split(sep)
        if len(cols) != 2 or not cols[0].strip() or not cols[1]:
            raise DataError(
                f"{where}: expected token<{sep_name}>tag, found {len(cols)} column(s): "
                f"{line[:60]!r}"
            )
        token, tag = cols
        if token == DOCSTART:  # a document separator, as in cdlm's BIO reader
            flush()
            continue
        prefix, dash, etype = tag.partition("-")
        if tag != OUTSIDE and (prefix not in ("B", "I") or not dash or not etype.strip()):
            raise DataError(f"{where}: unknown tag {tag!r}: expected O, B-<type> or I-<type>")
        if any(c.isspace() for c in tag):
            raise DataError(f"{where}: tag {tag!r} contains whitespace")
        if prefix == "I":
            before = tags[-1] if tags else None
            if before is None or before == OUTSIDE or before[2:] != etype:
                kind = (
                    "start" if before is None else "after_o" if before == OUTSIDE else "after_other"
                )
                repairs[kind] += 1
                repaired.append(number)
                tag = f"B-{etype}"
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    flush()
    return NativeFile(sentences, repairs, tuple(repaired))


def read_native(path: Path, sep: str) -> NativeFile:
    """Read one upstream file (UTF-8) with :func:`parse_native`; an empty file is an error."""
    result = parse_native(read_lines(path, "an upstream dataset file"), str(path), sep)
    if not result.sentences:
        raise DataError(f"{path}:1: empty file: no sentences")
    return result


def _dev_key(sent: Sentence, seed: int) -> str:
    text = "\x1f".join(sent.tokens)
    return hashlib.sha256(f"{seed}\n{text}".encode()).hexdigest()


def split_dev(
    sentences: Sequence[Sentence], fraction: float = DEV_FRACTION, seed: int = DEV_SEED
) -> tuple[list[Sentence], list[Sentence]]:
    """``(train, dev)`` from a train set: dev is ``round(fraction * n)`` sentences, at least one
    (a few more when a group of identical texts straddles the cut), chosen by seeded hash
    (module docstring); both keep the original order."""
    target = max(1, round(fraction * len(sentences)))
    keys = [_dev_key(s, seed) for s in sentences]
    chosen: set[str] = set()
    count = Counter(keys)
    taken = 0
    for key in sorted(count):
        if taken >= target:
            break
        chosen.add(key)
        taken += count[key]
    train = [s for s, k in zip(sentences, keys, strict=True) if k not in chosen]
    dev = [s for s, k in zip(sentences, keys, strict=True) if k in chosen]
    return train, dev


@dataclass
class Conversion:
    """What :func:`convert` did (saved as ``conversion.json`` beside the splits)."""

    name: str
    title: str
    repo: str
    commit: str
    files: dict[str, str]  # upstream file name -> its SHA-256
    sentences: dict[str, int]  # split -> sentences written
    types: list[str]
    dev_rule: str
    repairs: dict[str, dict[str, int]]  # upstream file name -> REPAIR_KINDS key -> count
    repaired_lines: list[str] = field(default_factory=list)  # "file:line", the first 20

    def lines(self) -> list[str]:
        """The report printed by the download and by ``cdlm data stats``/``check``."""
        counts = " / ".join(f"{self.sentences[s]} {s}" for s in SPLITS)
        out = [
            f"{self.title} ({self.name}): {counts} sentences, {len(self.types)} entity types; "
            f"converted to IOB2 from github.com/{self.repo} @ {self.commit[:7]}",
            f"dev: {self.dev_rule}",
        ]
        total = Counter[str]()
        for per_kind in self.repairs.values():
            total.update(per_kind)
        kinds = ", ".join(f"{text} {total[k]}" for k, text in REPAIR_KINDS.items())
        out.append(
            f"IOB repairs on conversion: {sum(total.values())} I- tags turned into B- ({kinds})"
        )
        for name, per_kind in self.repairs.items():
            if any(per_kind.values()):
                shown = ", ".join(f"{REPAIR_KINDS[k]} {n}" for k, n in per_kind.items() if n)
                out.append(f"  {name}: {shown}")
        if self.repaired_lines:
            out.append(f"  lines: {', '.join(self.repaired_lines)}")
        return out


def convert(name: str, raw_dir: Path, out_dir: Path) -> Conversion:
    """Read dataset ``name``'s upstream files from ``raw_dir`` (their upstream names), write
    ``train``/``dev``/``test.txt`` (strict IOB2, atomically) and ``conversion.json`` into
    ``out_dir``. Everything is read and checked before the first file is written."""
    spec = dataset(name)
    read: dict[str, tuple[Upstream, NativeFile]] = {}
    for upstream in spec.files:
        read[upstream.split] = (upstream, read_native(raw_dir / upstream.name, spec.sep))
    splits = {split: native.sentences for split, (_, native) in read.items()}
    if "dev" in splits:
        dev_rule = f"upstream {read['dev'][0].name}"
    else:
        train_name = read["train"][0].name
        splits["train"], splits["dev"] = split_dev(splits["train"])
        dev_rule = (
            f"{len(splits['dev'])} sentences of upstream {train_name} ({DEV_FRACTION:.0%}, seed "
            f"{DEV_SEED}, identical texts on one side), never of test; train is the rest"
        )
    empty = [s for s in SPLITS if not splits[s]]
    if empty:  # the strict reader refuses an empty split file, so never write one
        raise DataError(
            f"{raw_dir}: {name} would have an empty {empty[0]} split "
            f"({len(splits['train']) + len(splits['dev'])} train sentences upstream)"
        )
    repaired_lines = [
        f"{upstream.name}:{n}" for upstream, native in read.values() for n in native.repaired_lines
    ]
    conversion = Conversion(
        name=name,
        title=spec.title,
        repo=spec.repo,
        commit=spec.commit,
        files={f.name: f.sha256 for f in spec.files},
        sentences={s: len(splits[s]) for s in SPLITS},
        types=entity_types(s for split in SPLITS for s in splits[split]),
        dev_rule=dev_rule,
        repairs={upstream.name: dict(native.repairs) for upstream, native in read.values()},
        repaired_lines=repaired_lines[:20],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_bio(out_dir / f"{split}.txt", splits[split])
    atomic_write_text(out_dir / RECORD, json.dumps(asdict(conversion), indent=2) + "\n")
    return conversion


def record_lines(folder: Path) -> list[str]:
    """The conversion report kept in a dataset folder (``[]`` when it has none)."""
    path = folder / RECORD
    if not path.is_file():
        return []
    try:
        return Conversion(**json.loads(path.read_text(encoding="utf-8"))).lines()
    except (ValueError, TypeError, KeyError, OSError) as exc:
        return [f"note: {path}: cannot read the conversion record ({type(exc).__name__})"]


def download(
    name: str,
    dest: Path | str | None = None,
    *,
    base_url: str | None = None,
    force: bool = False,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> tuple[DownloadReport, Conversion]:
    """Download dataset ``name`` into ``dest/<name>/raw/`` (default ``dest``: the user cache,
    :func:`cdlm.data.registry.paper_cache_dir`) and convert it into ``dest/<name>/``.

    ``base_url`` replaces ``https://raw.githubusercontent.com/<repo>/<commit>`` (a mirror
    serving the repository's files at their paths: one mirror of both repositories serves all
    four). Valid files already there are not fetched again; the conversion always runs (it is
    cheap and keeps the splits in step with the files)."""
    spec = dataset(name)
    root = Path(dest).expanduser() if dest is not None else paper_cache_dir()
    report = fetch(
        spec.source(),
        root,
        base_url=base_url,
        force=force,
        retries=retries,
        timeout=timeout,
        backoff=backoff,
        progress=progress,
    )
    return report, convert(name, root / name / RAW, root / name)
