"""The paper's other four datasets (cdlm.data.paper): native formats read strictly, IOB repairs
counted per kind and reported, the seeded dev split of the MIT pair, and label descriptions that
name exactly the data's types. Real upstream files from ``../shared/data/paper``, converted once
per module (no network; the download itself is tested in test_data_download.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from cdlm.data import paper
from cdlm.data.registry import PAPER_DATASETS, SPLITS, domain_labels, domain_name, load_split
from cdlm.errors import DataError
from cdlm.reasoning.templates import default_prompts_dir, load_label_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def converted(paper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the four datasets converted from the upstream files."""
    root = tmp_path_factory.mktemp("paper_converted")
    for name in PAPER_DATASETS:
        paper.convert(name, paper_dir / name, root / name)
    return root


def _hand_made(folder: Path) -> Path:
    """MIT Restaurant's native shape (token<SPACE>tag) with one repair of each kind."""
    folder.mkdir(parents=True)
    lines = [
        "thai I-Cuisine",  # line 1: I- at sentence start
        "food O",
        "",
        "cheap O",
        "and O",
        "good I-Price",  # line 6: I- after O
        "",
        "pizza B-Dish",
        "hut I-Restaurant_Name",  # line 9: I- of another type
        "",
        "open B-Hours",
        "late I-Hours",  # valid
    ]
    (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "test.txt").write_text("sushi B-Dish\nnear O\nme B-Location\n", encoding="utf-8")
    return folder


def test_repairs_counted_per_kind_and_reported(
    tmp_path: Path, cdlm_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    raw = _hand_made(tmp_path / "raw")
    native = paper.read_native(raw / "train.txt", " ")
    assert native.repairs == {"start": 1, "after_o": 1, "after_other": 1}
    assert native.repaired_lines == (1, 6, 9)
    assert [s.tags for s in native.sentences] == [
        ("B-Cuisine", "O"),
        ("O", "O", "B-Price"),
        ("B-Dish", "B-Restaurant_Name"),
        ("B-Hours", "I-Hours"),
    ]
    out = tmp_path / "mit-restaurant"
    conversion = paper.convert("mit-restaurant", raw, out)
    assert conversion.repairs["train.txt"] == {"start": 1, "after_o": 1, "after_other": 1}
    assert conversion.repairs["test.txt"] == {"start": 0, "after_o": 0, "after_other": 0}
    assert conversion.repaired_lines == ["train.txt:1", "train.txt:6", "train.txt:9"]
    expected = (
        "IOB repairs on conversion: 3 I- tags turned into B- (I- at sentence start 1, "
        "I- after O 1, I- after another type 1)"
    )
    assert expected in conversion.lines()
    # The converted splits are strict IOB2 (the registry's reader, no repair, accepts them)...
    assert sum(len(load_split(str(out), s)) for s in ("train", "dev")) == 4
    # ...and the counts are printed by `cdlm data stats` and `cdlm data check`, never silent.
    stats = cdlm_cli("data", "stats", str(out))
    assert stats.returncode == 0, stats.stderr
    assert (
        expected in stats.stdout and "lines: train.txt:1, train.txt:6, train.txt:9" in stats.stdout
    )
    check = cdlm_cli("data", "check", str(out / "train.txt"))
    assert check.returncode == 0, check.stderr
    assert expected in check.stdout


def test_a_split_that_would_be_empty_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("thai B-Cuisine\n", encoding="utf-8")  # dev takes the only one
    (raw / "test.txt").write_text("sushi B-Dish\n", encoding="utf-8")
    with pytest.raises(DataError, match="would have an empty train split"):
        paper.convert("mit-restaurant", raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.parametrize(
    ("sep", "text", "message"),
    [
        (" ", "new york B-Location\n", r"train.txt:1: expected token<SPACE>tag, found 3 column"),
        ("\t", "p53\n", r"train.txt:1: expected token<TAB>tag, found 1 column"),
        ("\t", "p53\tO\nis\tX-Gene\n", r"train.txt:2: unknown tag 'X-Gene'"),
        ("\t", "p53\tB-\n", r"train.txt:1: unknown tag 'B-'"),
        ("\t", "\n\n", r"train.txt:1: empty file"),
    ],
)
def test_malformed_native_lines_are_refused(
    tmp_path: Path, sep: str, text: str, message: str
) -> None:
    path = tmp_path / "train.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        paper.read_native(path, sep)


@pytest.mark.parametrize("name", ["mit-movie", "mit-restaurant"])
def test_dev_split_is_seeded_share_of_train_never_test(
    name: str, paper_dir: Path, converted: Path, tmp_path: Path
) -> None:
    spec = paper.DATASETS[name]
    upstream = {f.split: paper.read_native(paper_dir / name / f.name, spec.sep) for f in spec.files}
    train, dev, test = (load_split(name, s, converted) for s in SPLITS)
    # Deterministic: a second conversion writes the same bytes.
    again = paper.convert(name, paper_dir / name, tmp_path / name)
    for split in SPLITS:
        assert (tmp_path / name / f"{split}.txt").read_bytes() == (
            converted / name / f"{split}.txt"
        ).read_bytes()
    # 10% of train (rounded), taken from train only: train + dev is the upstream train.
    assert len(dev) == round(paper.DEV_FRACTION * len(upstream["train"].sentences))
    assert again.sentences == {"train": len(train), "dev": len(dev), "test": len(test)}
    assert Counter(train + dev) == Counter(upstream["train"].sentences)
    assert test == upstream["test"].sentences  # test is untouched
    # Disjoint: no dev text is also a train text (identical texts stay on one side).
    assert not {s.tokens for s in dev} & {s.tokens for s in train}
    # The seed decides: another seed picks other sentences.
    _, other = paper.split_dev(upstream["train"].sentences, seed=paper.DEV_SEED + 1)
    assert len(other) == len(dev) and other != dev


@pytest.mark.parametrize("name", ["bionlp13cg", "bionlp13pc"])
def test_upstream_splits_are_kept_as_they_are(name: str, paper_dir: Path, converted: Path) -> None:
    spec = paper.DATASETS[name]
    for file in spec.files:
        native = paper.read_native(paper_dir / name / file.name, spec.sep).sentences
        assert load_split(name, file.split, converted) == native


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_label_descriptions_name_exactly_the_data_types(name: str, converted: Path) -> None:
    """labels/<name>.toml is the file the tagger and the LLM stages look up (by domain_name),
    and it describes every type of the data, by the data's own spelling, and no other."""
    assert domain_name(name) == name
    path = default_prompts_dir() / "labels" / f"{name}.toml"
    descriptions = load_label_file(path)
    types = [label[2:] for label in domain_labels(name, converted)[1::2]]
    assert sorted(descriptions) == types
    assert all(10 <= len(text) <= 100 for text in descriptions.values())


def test_conversion_record_round_trips(converted: Path, tmp_path: Path) -> None:
    lines = paper.record_lines(converted / "bionlp13cg")
    assert lines[0].startswith("BioNLP13CG (bionlp13cg): 3033 train / 1003 dev / 1906 test")
    assert lines[1] == "dev: upstream devel.tsv"
    record = json.loads((converted / "bionlp13cg" / paper.RECORD).read_text(encoding="utf-8"))
    assert record["files"]["train.tsv"] == paper.DATASETS["bionlp13cg"].files[0].sha256
    # A folder without a record prints nothing; a broken record says so in one line.
    assert paper.record_lines(tmp_path) == []
    shutil.copytree(converted / "bionlp13pc", tmp_path / "pc")
    (tmp_path / "pc" / paper.RECORD).write_text("{", encoding="utf-8")
    assert paper.record_lines(tmp_path / "pc")[0].startswith("note: ")
