"""The denoising filter keeps only sentences the original-data tagger tags perfectly."""

from __future__ import annotations

from cdlm.augment.filter import denoise
from cdlm.augment.record import Generated, Replacement
from cdlm.data.bio import Sentence


def _flip(tag: str, labels: list[str]) -> str:
    return next(lab for lab in labels if lab != tag and not lab.startswith("I-"))


def test_filter_drops_a_sentence_with_one_wrong_token(tiny_checkpoint, politics_train):
    from cdlm.model.tagger import Tagger

    tagger = Tagger.load(tiny_checkpoint)
    tokens = [list(s.tokens) for s in politics_train[:3]]
    predicted = tagger.predict_tags(tokens)
    edit = Replacement(start=0, end=1, old="x", new="y", label="O")
    agreeing = [
        Generated(Sentence(tuple(t), tuple(p)), i, "context", (edit,))
        for i, (t, p) in enumerate(zip(tokens, predicted, strict=True))
    ]
    # The same first sentence with exactly one gold tag that differs from the prediction.
    wrong_tags = list(predicted[0])
    wrong_tags[-1] = _flip(wrong_tags[-1], tagger.labels)  # last token: stays valid IOB2
    one_wrong = Generated(Sentence(tuple(tokens[0]), tuple(wrong_tags)), 0, "entity", (edit,))
    kept = denoise([agreeing[0], one_wrong, *agreeing[1:]], tagger)
    assert kept == agreeing
