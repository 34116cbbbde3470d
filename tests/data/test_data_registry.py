"""Where data is found (--data-dir, $CDLM_DATA_DIR, user cache, beside the checkout) and how a
domain name (CrossNER, the paper's other datasets) or a dataset folder becomes sentences and
labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.data import registry
from cdlm.data.bio import Sentence, write_bio
from cdlm.data.registry import (
    DOMAINS,
    PAPER_DATASETS,
    domain_dir,
    domain_labels,
    find_data_dir,
    load_split,
    paper_cache_dir,
    user_cache_dir,
)
from cdlm.errors import DataError


def _fake_crossner(root: Path, domain: str = "politics") -> Path:
    """A data folder that counts as CrossNER: it holds one domain sub-folder."""
    (root / domain).mkdir(parents=True)
    return root


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty user cache (via XDG_CACHE_HOME) and no checkout data."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(registry, "checkout_data_dir", lambda: tmp_path / "no-checkout-data")
    return tmp_path


def test_default_finds_checkout_data(crossner_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-cdlm-test")
    assert registry.checkout_data_dir().resolve() == crossner_dir.resolve()
    assert find_data_dir().resolve() == crossner_dir.resolve()


def test_resolution_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = user_cache_dir()
    assert cache == isolated / "xdg" / "cdlm" / "crossner"  # platformdirs honours XDG
    explicit = _fake_crossner(isolated / "explicit")
    env = _fake_crossner(isolated / "env")
    _fake_crossner(cache)
    assert find_data_dir() == cache
    monkeypatch.setenv(registry.ENV_VAR, str(env))
    assert find_data_dir() == env
    assert find_data_dir(explicit) == explicit


def test_missing_everywhere_is_one_clear_line(isolated: Path) -> None:
    with pytest.raises(DataError) as info:
        find_data_dir()
    message = str(info.value)
    assert "\n" not in message
    assert "cdlm data download crossner" in message
    assert str(user_cache_dir()) in message and "no-checkout-data" in message


def test_explicit_folder_without_domains_is_an_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_crossner(user_cache_dir())
    with pytest.raises(DataError, match="--data-dir has no CrossNER domain folders"):
        find_data_dir(isolated)
    monkeypatch.setenv(registry.ENV_VAR, str(isolated / "empty"))
    with pytest.raises(DataError, match="CDLM_DATA_DIR has no CrossNER domain folders"):
        find_data_dir()


def test_load_split_and_labels(crossner_dir: Path) -> None:
    train = load_split("politics", "train", crossner_dir)
    assert len(train) == 200
    assert load_split("politics", "train", crossner_dir) == train  # cached read, same content
    labels = domain_labels("conll2003", crossner_dir)
    assert labels == [
        "O",
        "B-location",
        "I-location",
        "B-misc",
        "I-misc",
        "B-organisation",
        "I-organisation",
        "B-person",
        "I-person",
    ]
    for domain in DOMAINS[1:]:
        labels = domain_labels(domain, crossner_dir)
        assert labels[0] == "O" and len(labels) % 2 == 1 and len(labels) > 9


def test_any_bio_folder_is_a_domain(tmp_path: Path, crossner_dir: Path) -> None:
    sents = load_split("music", "train", crossner_dir)[:20]
    write_bio(tmp_path / "train.txt", sents[:10])
    write_bio(tmp_path / "test.txt", sents[10:])
    assert load_split(str(tmp_path), "test") == sents[10:]
    types = {t[2:] for s in sents for t in s.tags if t != "O"}
    assert domain_labels(str(tmp_path)) == ["O"] + [f"{p}-{t}" for t in sorted(types) for p in "BI"]
    with pytest.raises(DataError, match="dev.txt: file not found"):
        load_split(str(tmp_path), "dev")


def test_bad_names(crossner_dir: Path) -> None:
    with pytest.raises(DataError, match="unknown domain 'nope'"):
        load_split("nope", "train", crossner_dir)
    with pytest.raises(DataError, match="unknown split 'validation'"):
        load_split("politics", "validation", crossner_dir)


def _fake_paper(root: Path, name: str, tag: str = "B-ACTOR") -> Path:
    """A converted paper dataset folder (train/dev/test.txt) under ``root``."""
    for split in ("train", "dev", "test"):
        write_bio(root / name / f"{split}.txt", [Sentence(("bruce",), (tag,))])
    return root / name


def test_paper_names_search_roots_then_cache(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert paper_cache_dir() == isolated / "xdg" / "cdlm" / "paper"
    assert paper_cache_dir() != user_cache_dir()  # CrossNER's cache folder stays its own
    cache = _fake_paper(paper_cache_dir(), "mit-movie", "B-cache")
    env = _fake_paper(isolated / "env", "mit-movie", "B-env")
    explicit = _fake_paper(isolated / "explicit", "mit-movie", "B-explicit")
    assert domain_dir("mit-movie") == cache
    monkeypatch.setenv(registry.ENV_VAR, str(isolated / "env"))
    assert domain_dir("mit-movie") == env
    assert domain_dir("mit-movie", isolated / "explicit") == explicit
    assert domain_labels("mit-movie", isolated / "explicit") == ["O", "B-explicit", "I-explicit"]
    # A root without the dataset is passed over (it usually names CrossNER), not an error.
    _fake_crossner(isolated / "crossner")
    assert domain_dir("mit-movie", isolated / "crossner") == env
    monkeypatch.setenv(registry.ENV_VAR, str(isolated / "crossner"))
    assert domain_dir("mit-movie") == cache


def test_paper_name_missing_everywhere_is_one_clear_line(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(registry.ENV_VAR, str(isolated / "env"))
    _fake_paper(isolated / "half", "bionlp13cg").joinpath("dev.txt").unlink()  # not converted
    with pytest.raises(DataError) as info:
        load_split("bionlp13cg", "train", isolated / "half")
    message = str(info.value)
    assert "\n" not in message and "run `cdlm data download bionlp13cg`" in message
    for root in (isolated / "half", isolated / "env", paper_cache_dir()):
        assert str(root / "bionlp13cg") in message


def test_paper_names_never_read_the_native_checkout_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``../shared/data/paper`` holds the upstream files in their native formats: no place the
    registry looks (the checkout fallback is CrossNER's only). The real checkout location is
    left in place here: with no --data-dir and no $CDLM_DATA_DIR, the cache is all it tries."""
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for name in PAPER_DATASETS:
        with pytest.raises(DataError) as info:
            domain_dir(name)
        assert f"(tried {paper_cache_dir() / name})" in str(info.value)


def test_crossner_names_unchanged_by_paper_folders(isolated: Path) -> None:
    root = isolated / "root"
    _fake_paper(root, "mit-restaurant")
    with pytest.raises(DataError, match="--data-dir has no CrossNER domain folders"):
        find_data_dir(root)  # a folder of paper datasets only is still no CrossNER folder
    assert domain_dir("mit-restaurant", root) == root / "mit-restaurant"
