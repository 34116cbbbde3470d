"""Long sentences are windowed and stitched, never cut; short ones are one plain window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdlm.errors import ConfigError
from cdlm.model.tagger import BatchBuilder, Tagger
from cdlm.model.windowing import plan_windows


def _words(text: str) -> list[str]:
    return text.split()


def _rewindowed(tagger: Tagger, max_pieces: int, stride: int) -> Tagger:
    """The same weights with another window size (shares the encoder, no copy)."""
    config = tagger.config.model_copy(deep=True)
    config.encoder.max_pieces = max_pieces
    config.encoder.stride = stride
    twin = Tagger(config, tagger.labels, tagger.encoder, tagger.tokenizer, tagger.encoder_name)
    twin.load_state_dict(tagger.state_dict())
    return twin.eval()


def test_plan_covers_every_word_from_its_most_central_window() -> None:
    # word w has 1-3 pieces with unique ids 100 * w + j, so a window shows where each word is
    pieces = [[100 * w + j for j in range(1 + w % 3)] for w in range(40)]
    plan = plan_windows(pieces, max_pieces=12, stride=4, cls_id=-1, sep_id=-2)
    assert all(len(win) <= 12 and win[0] == -1 and win[-1] == -2 for win in plan.windows)
    assert len(plan.windows) > 5

    def context(window: list[int], word: int) -> int:
        """Pieces on the word's worse side inside this window (-1: not wholly in it)."""
        if pieces[word][-1] not in window:
            return -1
        start = window.index(pieces[word][0])
        return min(start - 1, len(window) - 2 - (start + len(pieces[word]) - 1))

    for word, (k, pos) in enumerate(zip(plan.word_window, plan.word_position, strict=True)):
        assert plan.windows[k][pos] == pieces[word][0]  # its first piece is where the plan says
        best = max(context(win, word) for win in plan.windows)
        assert context(plan.windows[k], word) == best  # and no window gives it more context


def test_plan_of_a_short_sentence_is_one_window() -> None:
    plan = plan_windows([[5], [6, 7], [8]], max_pieces=16, stride=4, cls_id=1, sep_id=2)
    assert plan.windows == [[1, 5, 6, 7, 8, 2]]
    assert plan.word_position == [1, 2, 4]


def test_word_longer_than_a_window_keeps_its_first_piece() -> None:
    plan = plan_windows([[3] * 50, [4]], max_pieces=10, stride=2, cls_id=1, sep_id=2)
    assert plan.windows[plan.word_window[0]][plan.word_position[0]] == 3
    assert plan.windows[plan.word_window[1]][plan.word_position[1]] == 4


def test_window_settings_are_checked(tiny_tagger: Tagger) -> None:
    with pytest.raises(ValueError, match="stride"):
        plan_windows([[1]], max_pieces=16, stride=14, cls_id=1, sep_id=2)
    with pytest.raises(ConfigError, match=r"encoder\.stride"):
        _rewindowed(tiny_tagger, 32, 30)
    with pytest.raises(ConfigError, match=r"encoder\.max_pieces \(1024\) exceeds"):
        _rewindowed(tiny_tagger, 1024, 32)


def test_600_word_sentence_gets_a_prediction_for_every_word(tiny_tagger: Tagger) -> None:
    words = _words(
        "The Liberal Democrats won 12 seats in the 2019 European Parliament election "
        "in Baden-Württemberg , according to Reuters ."
    )
    long = (words * 40)[:600]
    batch = tiny_tagger.builder([long])
    assert batch.input_ids.shape[0] > 1  # really windowed
    assert batch.input_ids.shape[1] <= tiny_tagger.config.encoder.max_pieces
    probs = tiny_tagger.predict_proba([long])[0]
    assert probs.shape == (600, len(tiny_tagger.labels))
    assert np.allclose(probs.sum(-1), 1.0, atol=1e-4)
    assert len(tiny_tagger.predict_tags([long])[0]) == 600


def test_sentence_that_fits_equals_the_plain_encoder_forward(tiny_tagger: Tagger) -> None:
    """One window = exactly what the encoder computes on the whole sentence, first sub-token."""
    words = _words("Angela Merkel visited the Élysée Palace in Paris on Tuesday .")
    tok = tiny_tagger.tokenizer
    enc = tok([words], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = tiny_tagger.encoder(**enc).last_hidden_state[0]
        h, mask = tiny_tagger.encode(tiny_tagger.builder([words]))
        if tiny_tagger.casing is not None:
            h = h - tiny_tagger.casing(tiny_tagger.builder([words]).shape_ids)
    first = [enc.word_ids(0).index(w) for w in range(len(words))]
    assert mask.all()
    assert torch.allclose(h[0], hidden[first], atol=1e-5)


def test_windowed_and_batched_sentences_do_not_disturb_each_other(tiny_tagger: Tagger) -> None:
    short = _words("The Green Party won in Bremen .")
    long = (short * 120)[:700]
    alone = tiny_tagger.predict_proba([short])[0]
    together = tiny_tagger.predict_proba([long, short, []])
    assert together[2].shape == (0, len(tiny_tagger.labels))
    assert np.allclose(alone, together[1], atol=1e-5)


def test_small_windows_agree_with_one_big_window_away_from_edges(tiny_tagger: Tagger) -> None:
    """A 100-word sentence in one 512-piece window vs 48-piece windows: the stitched features
    stay close to the unwindowed ones (each word read where it has context on both sides)."""
    words = _words(
        "In 2005 , the Social Democratic Party of Germany formed a grand coalition with the "
        "Christian Democratic Union under Chancellor Angela Merkel ."
    )
    sentence = (words * 5)[:100]
    big, small = _rewindowed(tiny_tagger, 512, 0), _rewindowed(tiny_tagger, 48, 16)
    assert small.builder([sentence]).input_ids.shape[0] > 2
    with torch.inference_mode():
        h_big, _ = big.encode(big.builder([sentence]))
        h_small, _ = small.encode(small.builder([sentence]))
    cos = torch.nn.functional.cosine_similarity(h_big[0], h_small[0], dim=-1)
    assert cos.mean() > 0.9


def test_batches_group_sentences_by_word_pieces_not_words(
    tiny_tagger: Tagger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the encoder pays for is pieces: two words of a long rare term batch with the
    six-word sentence of long words, not with the two plain words (less padding), and every
    sentence's output is what it gets alone."""
    term = "Pneumonoultramicroscopicsilicovolcanoconiosis"
    sentences = [
        [term, term],  # 2 words, many pieces
        _words("the party won the vote ."),  # 6 words, 6 pieces
        _words("it won"),  # 2 words, 2 pieces
        [term] * 6,  # 6 words, most pieces
    ]
    seen: list[tuple[list[int], int]] = []  # (word counts, padded width) per forward
    build = BatchBuilder.__call__

    def spy(self, token_lists, *args, **kwargs):
        batch = build(self, token_lists, *args, **kwargs)
        seen.append((sorted(len(t) for t in token_lists), batch.input_ids.shape[1]))
        return batch

    monkeypatch.setattr(BatchBuilder, "__call__", spy)
    together = tiny_tagger.predict_proba(sentences, batch_size=2)
    monkeypatch.undo()
    tok = tiny_tagger.tokenizer
    pieces = [len(tok(s, is_split_into_words=True)["input_ids"]) for s in sentences]
    assert pieces[2] < pieces[1] < pieces[0] < pieces[3]
    assert seen == [([2, 6], pieces[1]), ([2, 6], pieces[3])]
    for sentence, probs in zip(sentences, together, strict=True):
        assert np.allclose(tiny_tagger.predict_proba([sentence])[0], probs, atol=1e-5)
