"""Junk characters are never entities: a token made only of control (Cc), format (Cf),
surrogate (Cs), unassigned or noncharacter (Cn) or private-use (Co) characters is tagged ``O``,
whatever the tagger's row says (``names_checkpoint`` tags a word without case ``location`` 0.8,
so each of these would be an entity otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.data.text import is_junk

JUNK = {
    "control": "\x01",
    "delete": "\x7f",
    "noncharacter": "\ufffe",
    "format": "\u200b",
    "tag-char": "\U000e0001",
    "private-use": "\ue000",
    "surrogate": "\ud800",
    "unassigned": "\U000e0fff",
}


@pytest.fixture(scope="module")
def names_model(names_checkpoint: Path):
    from cdlm import CDLM

    return CDLM.from_pretrained(names_checkpoint)


@pytest.mark.parametrize("junk", JUNK.values(), ids=JUNK.keys())
def test_a_junk_token_is_never_an_entity(names_model, junk: str) -> None:
    assert names_model.predict(junk) == []
    text = f"北京 {junk}{junk} 東京"
    found = [(e["text"], e["label"]) for e in names_model.predict(text)]
    assert found == [("北京", "location"), ("東京", "location")]


def test_a_junk_token_ends_a_span_and_is_not_a_likely_missed_one(names_model, names_tagger):
    out = names_model.predict("Angela \x01 Merkel")
    assert [(e["text"], e["label"]) for e in out] == [("Angela", "person"), ("Merkel", "person")]
    from cdlm.inference.tagging import tag_texts

    (tagged,) = tag_texts(names_tagger, ["\x01 \ufffe"])
    assert tagged.tags == ["O", "O"]
    assert tagged.candidates(top_k=3, missed_o_max=1.0) == []  # nothing for the LLM either


def test_is_junk_keeps_real_words_and_symbols() -> None:
    assert all(is_junk(j) for j in JUNK.values())
    assert is_junk(" \x01\t") and not is_junk("")
    for word in ("Paris", "北京", "€", "-", "😀", "a\u200bb", "x\x01"):
        assert not is_junk(word), word
