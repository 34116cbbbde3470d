"""Self-training on unlabeled text (cdlm/experiments/selftrain.py): the pool reader, labels
kept from the tagger, selection by threshold, the resumable labelling pass, tiny real runs, and
the LLM vote on uncertain spans with the real SmolLM2."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from shape_tagger import write_shape_checkpoint

from cdlm.config import CdlmConfig, load_config
from cdlm.data.registry import domain_labels, load_split
from cdlm.data.spans import label_types
from cdlm.errors import DataError
from cdlm.experiments import selftrain
from cdlm.experiments.selftrain import (
    IGNORE_TAG,
    PoolText,
    PseudoView,
    Rule,
    choose_on_dev,
    label_pool,
    label_texts,
    labelled,
    pool_from_split,
    pseudo_tags,
    read_pool,
    select_pseudo,
    self_train,
    verify_task,
)
from cdlm.runs import config_hash, training_view

TINY = {
    "train.target": "politics",
    "train.source_epochs": 0,
    "train.target_epochs": 4,
    "train.batch_size": 4,
    "train.head_lr": 1e-2,  # a teacher sure of some spans after 8 steps (dev F1 about 0.8)
    "train.threads": 1,
    "train.max_train_sentences": 8,  # the gold set; "split" pools the other 24 sentences
    "selftrain.choose": False,
}


def _config(**extra) -> CdlmConfig:
    return load_config(None, {**TINY, **extra})


@pytest.fixture(scope="module")
def shape_teacher(small_crossner: Path, tmp_path_factory: pytest.TempPathFactory):
    """``make(table)``: a politics checkpoint whose word probabilities are ``table[shape]``
    (tests/shape_tagger.py; every shape left out is ``O`` with probability 1)."""
    labels = domain_labels("politics", small_crossner)
    root = tmp_path_factory.mktemp("shape_teachers")

    def make(name: str, table: dict[str, dict[str, float]]) -> Path:
        return write_shape_checkpoint(root / name, labels, table)

    return make


# --- the pool ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "second_line", "message"),
    [
        ("pool.jsonl", b'{"text": "broken"\n', "not valid JSON"),
        ("pool.jsonl", b'{"id": 2}\n', "field 'text': expected a string, got nothing"),
        ("pool.jsonl", b'{"text": "caf\xe9"}\n', "not valid UTF-8"),
        ("pool.txt", b"caf\xe9 au lait\n", "not valid UTF-8"),
    ],
)
def test_a_bad_pool_line_is_one_file_line_error(
    tmp_path: Path, name: str, second_line: bytes, message: str
) -> None:
    path = tmp_path / name
    first = b'{"text": "Angela Merkel met officials ."}\n' if name.endswith("jsonl") else b"ok\n"
    path.write_bytes(first + second_line)
    with pytest.raises(DataError) as err:
        read_pool(path)
    assert str(err.value).startswith(f"{path}:2: ") and message in str(err.value)


def test_pool_texts_are_tokenised_as_predict_does(tmp_path: Path) -> None:
    path = tmp_path / "pool.txt"
    path.write_text("Baden-Württemberg's U.S. office ,opened.\n\n   \nSecond text\n")
    pool = read_pool(path)
    assert [p.tokens for p in pool] == [
        ("Baden-Württemberg", "'s", "U.S.", "office", ",", "opened", "."),
        ("Second", "text"),
    ]
    assert [p.source for p in pool] == [f"{path}:1", f"{path}:4"]  # blank lines skipped


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_an_empty_pool_is_an_error_not_a_plain_run(
    content: str, small_crossner: Path, tmp_path: Path
) -> None:
    for name in ("pool.txt", "pool.jsonl"):
        (tmp_path / name).write_text(content)
        with pytest.raises(DataError, match="holds no text"):
            read_pool(tmp_path / name)
    # through a run: the error comes before any teacher is trained
    with pytest.raises(DataError, match="holds no text"):
        self_train(_config(), tmp_path / "run", pool=tmp_path / "pool.txt",
                   data_dir=small_crossner, runs=tmp_path / "runs", progress=False)  # fmt: skip
    with pytest.raises(DataError, match="holds no text"):
        self_train(_config(), tmp_path / "run", pool=[], data_dir=small_crossner,
                   runs=tmp_path / "runs", progress=False)  # fmt: skip
    assert not (tmp_path / "run" / "teacher").exists()


def test_the_section_is_out_of_run_hashes_without_a_pool() -> None:
    """No pool: no existing run hash moves. With one, the chosen values are hashed only when
    they are set, and the grids only when they choose."""
    plain = load_config(None, {"train.target": "politics"})
    assert "selftrain" not in training_view(plain)
    other = plain.model_copy(deep=True)
    other.selftrain.threshold = 0.7  # not in use: not hashed
    assert config_hash(other) == config_hash(plain)
    chosen = load_config(None, {"train.target": "politics", "selftrain.pool": "pool.txt"})
    view = training_view(chosen)["selftrain"]
    assert "grid_thresholds" in view and "threshold" not in view
    chosen.selftrain.threshold = 0.7  # a choice's output: the same run
    assert config_hash(chosen) == config_hash(
        load_config(None, {"train.target": "politics", "selftrain.pool": "pool.txt"})
    )
    chosen.selftrain.choose = False
    assert "threshold" in training_view(chosen)["selftrain"]
    assert config_hash(chosen) != config_hash(plain)


# --- gold labels never reach the tagger ----------------------------------------------------


def test_pool_from_split_removes_the_labels(small_crossner: Path) -> None:
    train = load_split("politics", "train", small_crossner)
    pool = pool_from_split(train, exclude=train[:8])
    assert [p.tokens for p in pool] == [s.tokens for s in train[8:]]
    assert {f.name for f in dataclasses.fields(PoolText)} == {"tokens", "source"}
    assert not any(hasattr(p, "tags") for p in pool)


def test_gold_tags_of_the_pool_never_reach_a_training_batch(
    small_crossner: Path, shape_teacher, tmp_path: Path, monkeypatch
) -> None:
    """An all-O teacher over the rest of the train split, chosen on dev over two thresholds:
    every pseudo batch the students train on is all O or no-loss, never the pool's gold tags
    (each pool sentence holds entities). Also: the first round's labels are made once for
    both points, every point is recorded and the best dev F1 is kept."""
    teacher = shape_teacher("all_o", {})
    gold = {s.tokens: s.tags for s in load_split("politics", "train", small_crossner)[8:]}
    seen: list[tuple[tuple[str, ...], list[int], list[int]]] = []
    real_builder = PseudoView.builder

    def spy(self, token_lists, tag_lists):
        batch = real_builder(self, token_lists, tag_lists)
        ids = self.model.builder.label_to_id
        for b, tokens in enumerate(token_lists):
            want = [ids[t] for t in gold[tuple(tokens)]]
            seen.append((tuple(tokens), batch.tags[b, : len(tokens)].tolist(), want))
        return batch

    monkeypatch.setattr(PseudoView, "builder", spy)
    grid = {"selftrain.grid_thresholds": [0.9, 0.6], "selftrain.grid_rounds": [1]}
    config = _config(**{"selftrain.choose": True, "train.target_epochs": 1, **grid})
    run = {"data_dir": small_crossner, "runs": tmp_path / "runs", "progress": False}
    result = choose_on_dev(config, tmp_path / "run", pool="split", teacher=teacher, **run)
    assert {tokens for tokens, _, _ in seen} == set(gold)  # every pool sentence was trained on
    for tokens, row, want in seen:
        assert row != want, tokens
        assert set(row) <= {0, -100}, (tokens, row)  # O (id 0) or no loss
    first, second = result.rounds
    assert (first.threshold, second.threshold) == (0.6, 0.9)
    assert (first.resumed, second.resumed) == (0, 24) and first.selection.kept == 0
    assert [p.rounds for p in result.grid] == [0, 1, 1]
    assert result.chosen == max(result.grid, key=lambda p: (p.dev_f1, -p.rounds, p.threshold))


def test_pseudo_batches_skip_no_loss_words_and_carry_the_weight(shape_teacher) -> None:
    """A pseudo batch: no-loss words get the loss's ignore id, the loss is ``weight`` times the
    tagger's; an epoch is a pass over gold and one over pseudo batches (none at weight 0)."""
    import random

    import torch

    from cdlm.data.bio import Sentence
    from cdlm.model.tagger import IGNORE, Tagger

    model = Tagger.load(shape_teacher("all_o", {}))
    view = PseudoView(model, 0.25)
    batch = view.builder([("Anna", "met", "Berg")], [(IGNORE_TAG, "O", "B-person")])
    ids = model.builder.label_to_id
    assert batch.tags.tolist() == [[IGNORE, ids["O"], ids["B-person"]]]
    model.eval()
    with torch.no_grad():
        plain = model(model.builder([("Anna", "met", "Berg")], [("O", "O", "B-person")]))
        weighted = view(batch)
        alone = model(model.builder([("met", "Berg")], [("O", "B-person")]))
    assert weighted.loss.item() == pytest.approx(0.25 * alone.loss.item(), rel=1e-5)
    assert weighted.loss.item() != pytest.approx(0.25 * plain.loss.item(), rel=1e-3)

    gold = [Sentence(("a",), ("O",))] * 5
    pseudo = [Sentence(("b",), (IGNORE_TAG,))] * 9
    plan, steps = selftrain.mixed_plan(model, gold, pseudo, 0.5, 4, random.Random(1))
    kinds = [type(m).__name__ for m, _ in plan(1)]
    assert steps == len(kinds) == 5 and kinds.count("PseudoView") == 3
    assert selftrain.mixed_plan(model, gold, pseudo, 0.0, 4, random.Random(1))[1] == 2


# --- selection -----------------------------------------------------------------------------

LABELS = ["O", "B-location", "I-location", "B-person", "I-person"]
WORDS = ["Anna", "Berg", "met", "Paris", "."]
PROBS = np.array(
    [
        [0.03, 0.005, 0.005, 0.95, 0.005],  # Anna: B-person 0.95
        [0.10, 0.01, 0.01, 0.03, 0.85],  # Berg: I-person 0.85 (person: min 0.85, mean 0.90)
        [0.97, 0.0075, 0.0075, 0.0075, 0.0075],  # met: O 0.97
        [0.05, 0.92, 0.01, 0.01, 0.01],  # Paris: B-location 0.92
        [0.60, 0.10, 0.10, 0.10, 0.10],  # .: O 0.60
    ]
)


def _tags(rule: Rule) -> tuple[str, ...] | None:
    lab = labelled(0, WORDS, PROBS, LABELS, load_config(None))
    kept, _ = rule.sort(lab)
    return pseudo_tags(lab, [s.span for s in kept], rule.threshold)


def test_pseudo_spans_are_selected_by_threshold() -> None:
    """A span's confidence is its weakest word (min): "Anna Berg" at 0.85 is not kept at 0.9,
    though its mean is 0.90. Outside words are O only where p(O) reaches the threshold."""
    lab = labelled(0, WORDS, PROBS, LABELS, load_config(None))
    assert lab.tags == ("B-person", "I-person", "O", "B-location", "O")
    assert [(s.span.label, s.score) for s in lab.scored()] == [("person", 0.85), ("location", 0.92)]
    x = IGNORE_TAG
    assert _tags(Rule(0.9)) == (x, x, "O", "B-location", x)
    assert _tags(Rule(0.8)) == ("B-person", "I-person", "O", "B-location", x)
    assert _tags(Rule(0.9, {"person": 0.8})) == ("B-person", "I-person", "O", "B-location", x)
    assert _tags(Rule(0.95)) == (x, x, "O", x, x)
    assert _tags(Rule(0.99)) is None  # no word carries loss: the text is dropped
    kept, uncertain = Rule(0.9, low=0.5).sort(lab)
    assert [s.span for s in kept] == [(3, 4, "location")]
    assert [s.span for s in uncertain] == [(0, 2, "person")]

    pool = [PoolText(tuple(WORDS), "hand:1")]
    sentences, stats = select_pseudo([lab], pool, Rule(0.9))
    assert [s.tags for s in sentences] == [(x, x, "O", "B-location", x)]
    assert (stats.kept, stats.outside_words, stats.ignored_words) == (1, 1, 3)
    assert select_pseudo([lab], pool, Rule(0.99))[0] == []


# --- the labelling pass --------------------------------------------------------------------

POOL = [
    PoolText(tuple(f"Anna met {'the ' * k}officials in Paris .".split()), f"pool:{k + 1}")
    for k in range(10)
]


def _records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "header" in json.loads(lines[0])
    return [json.loads(line) for line in lines[1:]]


def test_labelling_resumes_after_an_interruption(shape_teacher, tmp_path: Path, monkeypatch):
    """Killed after its first chunk (and a torn line left behind), a second pass labels only
    the rest; every text is written once; the result equals an uninterrupted pass."""
    teacher = shape_teacher("names", {"init-cap": {"B-person": 0.7, "O": 0.3}})
    config = load_config(None)
    path = tmp_path / "pseudo" / "round1.jsonl"
    calls: list[list[int]] = []

    def interrupted(tagger, texts, indices, cfg):
        calls.append(list(indices))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is killed
        return label_texts(tagger, texts, indices, cfg)

    monkeypatch.setattr(selftrain, "label_texts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        label_pool(teacher, POOL, path, config, progress=False, chunk=4)
    assert sorted(r["i"] for r in _records(path)) == sorted(calls[0]) and len(calls[0]) == 4
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"i": 9, "key": "torn')  # a write cut short

    calls.clear()
    monkeypatch.setattr(selftrain, "label_texts", lambda *a: calls.append(a[2]) or label_texts(*a))
    passed = label_pool(teacher, POOL, path, config, progress=False, chunk=4)
    assert passed.resumed == 4 and sum(map(len, calls)) == 6
    assert sorted(r["i"] for r in _records(path)) == list(range(10))  # each once
    fresh = label_pool(teacher, POOL, tmp_path / "fresh.jsonl", config, progress=False)
    assert passed.labelled == fresh.labelled

    calls.clear()  # done: nothing labelled again; another teacher starts afresh
    assert label_pool(teacher, POOL, path, config, progress=False).resumed == 10 and not calls
    other = shape_teacher("other", {"init-cap": {"B-location": 0.9, "O": 0.1}})
    again = label_pool(other, POOL, path, config, progress=False)
    assert again.resumed == 0 and len(_records(path)) == 10
    assert again.labelled[0].tags[0] == "B-location"


# --- tiny real runs ------------------------------------------------------------------------


def test_self_train_one_round_writes_a_loadable_checkpoint(
    small_crossner: Path, tmp_path: Path
) -> None:
    """Teacher trained by the target recipe, one round over the rest of the train split, the
    student saved as a checkpoint CDLM loads; a second call reuses teacher, labels and round."""
    from cdlm import CDLM

    out = tmp_path / "run"
    config = _config(**{"selftrain.threshold": 0.5})
    result = self_train(config, out, pool="split", data_dir=small_crossner,
                        runs=tmp_path / "runs", progress=False)  # fmt: skip
    (log,) = result.rounds
    assert result.pool == "split" and result.pool_texts == log.labelled == 24
    assert len(_records(out / "pseudo" / "round1.jsonl")) == 24
    assert log.selection.sentences > 0 and log.best_epoch >= 1
    assert [p.rounds for p in result.grid] == [0, 1] and result.chosen == result.grid[1]

    model = CDLM.from_pretrained(out)
    assert isinstance(model.predict("Angela Merkel visited France ."), list)
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["selftrain"]["pool"] == "split" and saved["selftrain"]["rounds"] == 1
    scores = json.loads((out / "scores.json").read_text())
    assert scores["provenance"]["config"]["selftrain"]["threshold"] == 0.5
    assert scores["dev"]["f1"] == result.dev.f1
    plain = _config()
    teacher = json.loads((out / "teacher" / "config.json").read_text())["config"]
    # the teacher is the plain run: its hash is a plain run's
    assert training_view(plain) == training_view(CdlmConfig.model_validate(teacher))
    assert config_hash(CdlmConfig.model_validate(saved)) != config_hash(plain)

    again = self_train(config, out, pool="split", data_dir=small_crossner,
                       runs=tmp_path / "runs", progress=False)  # fmt: skip
    assert again.rounds == result.rounds  # read back, not retrained


# --- the LLM vote on uncertain spans -------------------------------------------------------


def test_uncertain_spans_go_to_the_smollm2_vote_and_cost_is_counted(
    shape_teacher, smollm_path: Path, tmp_path: Path
) -> None:
    """Three capitalised words the teacher gives person at 0.75: between low (0.5) and the
    threshold (0.9), so the expert vote decides each; calls, tokens and seconds are counted."""
    from cdlm.model.tagger import Tagger

    teacher = Tagger.load(shape_teacher("unsure", {"init-cap": {"B-person": 0.75, "O": 0.25}}))
    pool = [
        PoolText(("Anna", "met", "officials", "in", "the", "capital", ".")),
        PoolText(("Later", ",", "Berg", "spoke", "to", "reporters", ".")),
    ]
    config = load_config(None, {
        "llm.model": str(smollm_path), "llm.cache_dir": str(tmp_path / "cache"),
        "llm.n_ctx": 2048, "reasoning.experts": 1,  # SmolLM2 reads ~50 tokens/s on a busy CPU
    })  # fmt: skip
    labs = label_texts(teacher, [p.tokens for p in pool], range(2), config)
    task = verify_task(config, "politics", label_types(teacher.labels))

    plain, plain_stats = select_pseudo(labs, pool, Rule(0.9))
    assert plain_stats.kept == 0 and plain_stats.verified == 0
    assert all(IGNORE_TAG in s.tags for s in plain)

    sentences, stats = select_pseudo(labs, pool, Rule(0.9, low=0.5), task)
    assert stats.uncertain == 3 and stats.verified <= 3
    usage = task.log.summary()
    assert usage["vote"].requests >= 2 and usage["total"].calls >= 2  # a vote per sentence
    assert usage["total"].prompt_tokens > 0 and usage["total"].seconds > 0
    words = {(k, w) for k, s in enumerate(sentences) for w, t in enumerate(s.tags) if t != "O"}
    kept = sum(t.startswith("B-") for s in sentences for t in s.tags)
    assert kept == stats.verified
    assert len(words) == 3  # the three names: a voted type or no loss, never a guessed O
