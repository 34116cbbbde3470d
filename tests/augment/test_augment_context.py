"""Context-level semi-facts through a real fill-mask pipeline, and the LLM filler with SmolLM2."""

from __future__ import annotations

from collections import Counter

import pytest

from cdlm.augment.context import WORD, context_semifacts, eligible_positions


@pytest.fixture(scope="module")
def semifacts(politics_train, mlm_filler):
    sents = politics_train[:4]
    return sents, context_semifacts(sents, mlm_filler, 3, seed=11, max_words=2)


def test_entity_tokens_and_labels_never_change(semifacts):
    sents, (gen, stats) = semifacts
    assert stats.generated == len(gen) > 0
    for g in gen:
        orig = sents[g.origin]
        assert g.sentence.tags == orig.tags  # same length, same labels
        changed = [
            i for i, (a, b) in enumerate(zip(orig.tokens, g.sentence.tokens, strict=True)) if a != b
        ]
        assert 1 <= len(changed) <= 2
        assert changed == sorted(r.start for r in g.replacements)
        for i in changed:
            assert orig.tags[i] == "O" and orig.tokens[i].isalpha()
            assert WORD.match(g.sentence.tokens[i])
        for i, tag in enumerate(orig.tags):
            if tag != "O":
                assert g.sentence.tokens[i] == orig.tokens[i]


def test_ratio_respected(semifacts):
    sents, (gen, _) = semifacts
    per_origin = Counter(g.origin for g in gen)
    assert max(per_origin.values()) <= 3
    assert len({g.sentence.tokens for g in gen}) == len(gen)


def test_same_seed_same_output(politics_train, mlm_filler, semifacts):
    sents, (gen, _) = semifacts
    again, _ = context_semifacts(sents, mlm_filler, 3, seed=11, max_words=2)
    assert again == gen


def test_sentence_without_o_words_is_counted(mlm_filler):
    from cdlm.data.bio import Sentence

    sent = Sentence(("Angela", "Merkel", "."), ("B-politician", "I-politician", "O"))
    assert eligible_positions(sent) == []
    gen, stats = context_semifacts([sent], mlm_filler, 5, seed=1)
    assert gen == [] and stats.sentences_without_words == 1


def test_llm_filler_returns_one_word_with_smollm2(smollm_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from cdlm.augment.context import LLMFiller
    from cdlm.config import LLMConfig
    from cdlm.llm.factory import make_backend

    backend = make_backend(
        LLMConfig(backend="llama", model=str(smollm_path), max_tokens=32, n_threads=1), cache=False
    )
    filler = LLMFiller(backend, max_chars=24)
    original = ("The", "minister", "visited", "Berlin", "on", "Monday", ".")
    (cands,) = filler.fill([(original, 1)])
    assert filler.fallbacks == 0, "SmolLM2 under the one-word grammar should always answer"
    (word,) = cands
    assert WORD.match(word) and len(word) <= 24 and " " not in word
    # The cloze prompt: the position is blanked out, the rest of the sentence is shown.
    prompt = filler.messages(original, 1)[-1].content
    assert prompt == "The ___ visited Berlin on Monday ."
