"""Where data is found (--data-dir, $CDLM_DATA_DIR, user cache, beside the checkout) and how a
domain name or a dataset folder becomes sentences and labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.data import registry
from cdlm.data.bio import write_bio
from cdlm.data.registry import (
    DOMAINS,
    domain_labels,
    find_data_dir,
    load_split,
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
