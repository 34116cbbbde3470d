"""The counterfactual entity-bias probe: names, placeholders, BIO validity, rates, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_provenance import assert_commit_stamp

from cdlm.augment.entity import mentions_by_type
from cdlm.data.bio import format_bio, parse_bio_lines, write_bio
from cdlm.data.registry import load_split
from cdlm.data.spans import bio_spans
from cdlm.errors import DataError
from cdlm.experiments.probe import (
    MASK_TOKEN,
    EntityBase,
    build_entity_base,
    counterfactuals,
    nonce_word,
    outcome,
    resolve_input,
    run_probe,
    summarise_probe,
)
from cdlm.model.features import word_shape


@pytest.mark.parametrize("word", ["Merkel", "NATO", "McDonald's", "B52", "1996", "iPhone", "of"])
def test_nonce_words_keep_the_shape_but_not_the_word(word):
    nonce = nonce_word(word, random.Random(0))
    assert nonce != word and len(nonce) >= len(word)
    assert word_shape(nonce) == word_shape(word)


@pytest.fixture(scope="module")
def politics(crossner_dir):
    sentences = load_split("politics", "dev", crossner_dir)[:40]
    base = build_entity_base(sentences, ["politics", "conll2003"], crossner_dir)
    return sentences, base


def test_entity_base_uses_other_domains_and_falls_back_for_unshared_types(politics, crossner_dir):
    sentences, base = politics
    assert base.pool("person") == "other domains"  # science, music... have persons
    assert base.pool("politician") == "same domain (other sentences)"  # only politics has it
    assert all(i < len(sentences) for i, _ in base.same["politician"])
    # The probed domain's own train split is not a source of "other-domain" names.
    assert "politicalparty" not in base.other.mentions and "election" not in base.other.mentions
    # Nor is the source domain (the tagger was pre-trained on its names).
    conll = mentions_by_type(load_split("conll2003", "train", crossner_dir))["organisation"]
    others = {
        n
        for d in ("science", "music", "literature", "ai")
        for n in mentions_by_type(load_split(d, "train", crossner_dir)).get("organisation", [])
    }
    only_conll = set(conll) - others
    assert only_conll and not only_conll & set(base.other.mentions["organisation"])


@pytest.mark.parametrize("mode", ["swap", "nonce", "mask"])
def test_counterfactual_sentences_stay_valid_bio_and_change_one_entity(politics, mode):
    sentences, base = politics
    gold = [s.tags for s in sentences]  # gold spans stand in for predictions here
    cfs, skipped = counterfactuals(sentences, gold, base, mode, seed=0)
    n_spans = sum(len(bio_spans(t)) for t in gold)
    assert len(cfs) + sum(skipped.values()) == n_spans and len(cfs) > 0
    # Strict IOB2 reader accepts every changed sentence.
    text = format_bio([cf.changed for cf in cfs])
    assert len(parse_bio_lines(text.splitlines()).sentences) == len(cfs)
    for cf in cfs:
        original = sentences[cf.sentence]
        assert cf.changed.tokens[cf.start : cf.end] == cf.replacement
        assert cf.changed.tags[cf.start] == f"B-{cf.label}"
        assert cf.replacement != cf.original
        # Everything outside the span is unchanged.
        old_end = cf.start + len(cf.original)
        assert cf.changed.tokens[: cf.start] == original.tokens[: cf.start]
        assert cf.changed.tokens[cf.end :] == original.tokens[old_end:]
        if mode == "mask":
            assert set(cf.replacement) == {MASK_TOKEN}
        if mode == "swap" and base.pool(cf.label) == "other domains":
            assert cf.replacement in base.other.mentions[cf.label]
    # Draws are reproducible.
    again, _ = counterfactuals(sentences, gold, base, mode, seed=0)
    assert [c.replacement for c in again] == [c.replacement for c in cfs]
    # The gold tags re-read as predictions make every entity survive.
    assert all(outcome(cf, cf.changed.tags) == "survived" for cf in cfs)


def test_argmax_style_stray_tags_are_no_entity(politics):
    """A stray ``I-X`` (an argmax decoder can emit one) is no entity, as seqeval's strict mode
    scores it: the probe builds no counterfactual for it, and the sentences it does build for
    the real spans are valid IOB2."""
    sentences, base = politics
    sent = next(s for s in sentences if any(t.startswith("I-") for t in s.tags))
    stray = [t if t.startswith("I-") else "O" for t in sent.tags]  # I- without B-
    cfs, skipped = counterfactuals([sent], [stray], base, "nonce", seed=0)
    assert cfs == [] and not skipped
    mixed = list(sent.tags)
    at = next(i for i in range(1, len(mixed)) if mixed[i] == "O" and mixed[i - 1] == "O")
    mixed[at] = "I-person"  # one stray tag beside the gold spans
    cfs, _ = counterfactuals([sent], [mixed], base, "nonce", seed=0)
    assert len(cfs) == len(bio_spans(sent.tags)) and all(cf.start != at for cf in cfs)
    text = format_bio([cf.changed for cf in cfs])
    assert len(parse_bio_lines(text.splitlines()).sentences) == len(cfs)


def test_outcomes_tell_type_boundary_and_miss_apart(politics):
    sentences, base = politics
    cfs, _ = counterfactuals(sentences, [s.tags for s in sentences], base, "mask", seed=0)
    cf = next(c for c in cfs if c.end - c.start >= 2)
    n = len(cf.changed.tags)
    other = "location" if cf.label != "location" else "person"
    retype = list(cf.changed.tags)
    retype[cf.start : cf.end] = [f"B-{other}"] + [f"I-{other}"] * (cf.end - cf.start - 1)
    assert outcome(cf, retype) == "other_type"
    short = list(cf.changed.tags)
    short[cf.end - 1] = "O"
    assert outcome(cf, short) == "boundary"
    assert outcome(cf, ["O"] * n) == "missed"


def test_survival_rates_are_a_hand_count():
    """Five predicted entities, each re-tagged by hand after masking: two survive, one changes
    type, one loses a word, one is missed; two more had no replacement (skipped)."""
    from collections import Counter

    from cdlm.data.bio import Sentence

    def s(*pairs: str) -> Sentence:
        words = [p.rsplit("/", 1) for p in pairs]
        return Sentence(tuple(w for w, _ in words), tuple(t for _, t in words))

    sentences = [
        s("Merkel/B-person", "met/O", "Macron/B-person", "in/O", "Paris/B-location"),
        s("NATO/B-organisation", "met/O"),
        s("Angela/B-person", "Merkel/I-person", "spoke/O"),
    ]
    cfs, _ = counterfactuals(sentences, [x.tags for x in sentences], EntityBase({}), "mask", 0)
    assert [(c.sentence, c.start, c.label) for c in cfs] == [
        (0, 0, "person"), (0, 2, "person"), (0, 4, "location"), (1, 0, "organisation"),
        (2, 0, "person"),
    ]  # fmt: skip
    retagged = [
        ["B-person", "O", "O", "O", "B-location"],  # Merkel survives
        ["O", "O", "B-location", "O", "B-location"],  # Macron: other type
        ["O", "O", "O", "O", "B-location"],  # Paris survives
        ["O", "O"],  # NATO missed
        ["B-person", "O", "O"],  # Angela Merkel: boundary
    ]
    mode = summarise_probe(cfs, retagged, Counter({"person": 2}), None)
    total = mode.overall
    assert (total.entities, total.skipped) == (5, 2)
    assert total.counts == {"survived": 2, "other_type": 1, "boundary": 1, "missed": 1}
    assert total.rate == pytest.approx(2 / 5)  # skipped entities are not in the rate
    rates = {t: (v.entities, v.rate, v.skipped) for t, v in mode.per_type.items()}
    assert rates == {
        "person": (3, pytest.approx(1 / 3), 2),
        "location": (1, 1.0, 0),
        "organisation": (1, 0.0, 0),
    }
    assert [e["outcome"] for e in mode.examples] == [
        "survived", "other_type", "survived", "missed", "boundary"
    ]  # fmt: skip


@pytest.fixture(scope="module")
def probe_checkpoint(request, tmp_path_factory) -> Path:
    """The tagger worker's ``tiny_checkpoint`` when it exists; else an untrained tagger."""
    try:
        return Path(request.getfixturevalue("tiny_checkpoint"))
    except pytest.FixtureLookupError:
        import torch

        from cdlm.config import load_config
        from cdlm.data.registry import domain_labels
        from cdlm.model.tagger import Tagger

        torch.manual_seed(0)
        config = load_config(overrides={"train.target": "politics"})
        path = tmp_path_factory.mktemp("ckpt")
        Tagger.create(config, domain_labels("politics")).save(path)
        return path


def test_probe_rates_on_a_checkpoint(probe_checkpoint, crossner_dir):
    from cdlm.model.tagger import Tagger

    model = Tagger.load(probe_checkpoint)
    sentences = _short_sentences(crossner_dir, 3)
    n, modes = run_probe(model, sentences, "politics", crossner_dir, "nonce", seed=0)
    assert set(modes) == {"swap", "nonce"}
    for mode in modes.values():
        total = mode.overall
        assert total.entities + total.skipped == n
        assert sum(total.counts.values()) == total.entities
        for part in [total, *mode.per_type.values()]:  # rate = survived / replaced entities
            survived = part.counts["survived"]
            assert part.rate == (survived / part.entities if part.entities else None)
        assert sum(t.entities for t in mode.per_type.values()) == total.entities


def _short_sentences(crossner_dir: Path, n: int):
    """The n shortest politics dev sentences with a gold entity (keeps the re-tagging cheap:
    an untrained tagger predicts an entity on almost every word)."""
    dev = [s for s in load_split("politics", "dev", crossner_dir) if bio_spans(s.tags)]
    return sorted(dev, key=lambda s: len(s.tokens))[:n]


def test_resolve_input_accepts_files_and_domain_splits(crossner_dir, tmp_path):
    sentences, name, domain = resolve_input("politics:dev", crossner_dir)
    assert (name, domain, len(sentences)) == ("politics", "politics", 541)
    assert resolve_input("science", crossner_dir)[0] == load_split("science", "test", crossner_dir)
    path = tmp_path / "mine.txt"
    write_bio(path, sentences[:2])
    assert resolve_input(str(path), crossner_dir) == (sentences[:2], "mine", None)
    with pytest.raises(DataError, match="nowhere"):
        resolve_input("nowhere/dev", crossner_dir)


def test_probe_cli_writes_results_with_provenance(probe_checkpoint, crossner_dir, tmp_path):
    from typer.testing import CliRunner

    from cdlm.cli import _register, app

    _register()
    out = tmp_path / "probe.json"
    bio = tmp_path / "short.txt"
    write_bio(bio, _short_sentences(crossner_dir, 2))
    args = ["probe", "--checkpoint", str(probe_checkpoint), "--input", str(bio)]
    args += ["--data-dir", str(crossner_dir), "--placeholder", "mask"]
    result = CliRunner().invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["sentences"] == 2 and set(data["modes"]) == {"swap", "mask"}
    assert data["domain"] == "short" and "type survival" in result.output
    assert data["config"]["causal"]["probe_seed"] == 0
    assert_commit_stamp(data["provenance"])
    bad = CliRunner().invoke(app, [*args[:3], "--input", "nowhere/dev"])
    assert isinstance(bad.exception, DataError) and "nowhere/dev" in str(bad.exception)
