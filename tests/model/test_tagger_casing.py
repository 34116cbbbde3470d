"""Word-shape features: the classes, and that they give an uncased encoder back the case."""

from __future__ import annotations

import pytest
import torch

from cdlm.model.features import SHAPES, word_shape
from cdlm.model.tagger import Tagger


def _words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("word", "shape"),
    [
        ("1999", "all-digit"),
        ("3.5", "has-digit"),
        ("B52", "has-digit"),
        (",", "punct"),
        ("--", "punct"),
        ("A", "single-cap"),
        ("NATO", "all-caps"),
        ("U.S.", "all-caps"),
        ("Merkel", "init-cap"),
        ("Baden-Württemberg", "init-cap"),
        ("O'Brien", "init-cap"),
        ("iPhone", "mixed-case"),
        ("McDonald", "mixed-case"),
        ("parliament", "lower"),
        ("long-time", "lower"),
        ("€", "other"),
        ("北京", "other"),
    ],
)
def test_word_shape(word: str, shape: str) -> None:
    assert SHAPES[word_shape(word)] == shape


def _twin(tagger: Tagger, casing: bool) -> Tagger:
    config = tagger.config.model_copy(deep=True)
    config.encoder.casing_features = casing
    twin = Tagger(config, tagger.labels, tagger.encoder, tagger.tokenizer, tagger.encoder_name)
    twin.head.load_state_dict(tagger.head.state_dict())
    if casing and tagger.casing is not None:
        twin.casing.load_state_dict(tagger.casing.state_dict())
    return twin.eval()


def test_casing_features_separate_what_the_uncased_encoder_merges(tiny_tagger: Tagger) -> None:
    lower = _words("the greens met the social democrats in berlin")
    title = _words("The Greens met the Social Democrats in Berlin")
    plain, cased = _twin(tiny_tagger, False), _twin(tiny_tagger, True)
    assert plain.casing is None and cased.casing is not None
    with torch.inference_mode():
        a, _ = plain.encode(plain.builder([lower]))
        b, _ = plain.encode(plain.builder([title]))
        assert torch.allclose(a, b, atol=1e-6)  # MiniLM is uncased: identical without features
        c, _ = cased.encode(cased.builder([lower]))
        d, _ = cased.encode(cased.builder([title]))
    changed = (c[0] - d[0]).abs().amax(-1) > 1e-6
    expect = torch.tensor([x != y for x, y in zip(lower, title, strict=True)])
    assert torch.equal(changed, expect)  # exactly the words whose case differs


def test_shape_ids_in_batch(tiny_tagger: Tagger) -> None:
    batch = tiny_tagger.builder([["NATO", "met", "in", "1999"], ["Paris"]])
    names = [[SHAPES[i] for i in row] for row in batch.shape_ids.tolist()]
    assert names == [
        ["all-caps", "lower", "lower", "all-digit"],
        ["init-cap", "<pad>", "<pad>", "<pad>"],
    ]
    assert batch.word_mask.tolist() == [[True] * 4, [True, False, False, False]]
