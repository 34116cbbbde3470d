"""Raw text -> entities with character offsets that always slice the input exactly.

The offset tests use ``names_tagger`` (tests/shape_tagger.py): a saved tagger whose entities are
known from the words' shapes, so each test first checks the exact entities it must find, then
their offsets -- a test cannot pass on an empty answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdlm.data.text import tokenize
from cdlm.errors import ConfigError
from cdlm.inference.predict import predict_texts
from cdlm.inference.tagging import entities_from, tag_texts
from cdlm.model.tagger import Tagger

TEXTS = [
    "Angela Merkel's CDU won 32.9 % in Baden-Württemberg, said the U.S. embassy.",
    "  Zoë   Saldaña\tmet\u00a0François Hollande in Besançon (France)…  ",
    "北京 hosted the 2008 Summer Olympics 🎉 and Emmanuel Macron visited.",
    "",
    "   ",
]
# What names_tagger finds in TEXTS: (text, label, score = the span's probability of its
# type: the mean over its words of P(B-type) + P(I-type); a capitalised word is 0.3 + 0.6).
EXPECTED = [
    [
        ("Angela Merkel", "person", 0.9),
        ("CDU", "organisation", 0.5),
        ("Baden-Württemberg", "person", 0.9),
        ("U.S.", "organisation", 0.5),
    ],
    [
        ("Zoë   Saldaña", "person", 0.9),
        ("François Hollande", "person", 0.9),
        ("Besançon", "person", 0.9),
        ("France", "person", 0.9),
    ],
    [
        ("北京", "location", 0.8),
        ("Summer Olympics", "person", 0.9),
        ("🎉", "location", 0.8),
        ("Emmanuel Macron", "person", 0.9),
    ],
    [],
    [],
]


def found(record: dict) -> list[tuple[str, str, float]]:
    return [(e["text"], e["label"], round(e["score"], 3)) for e in record["entities"]]


@pytest.mark.parametrize("text", TEXTS)
def test_tokens_are_exact_slices_without_whitespace(text: str) -> None:
    tokens = tokenize(text)
    for tok in tokens:
        assert text[tok.start : tok.end] == tok.text and tok.text.strip() == tok.text != ""
    # nothing but whitespace is left between tokens
    covered = "".join(text[a.end : b.start] for a, b in zip(tokens, tokens[1:], strict=False))
    assert covered.strip() == ""


def test_crossner_like_tokens() -> None:
    words = [
        t.text for t in tokenize("Merkel's CDU, the U.S. and Baden-Württemberg won 1,000 seats.")
    ]
    assert words == [
        "Merkel",
        "'s",
        "CDU",
        ",",
        "the",
        "U.S.",
        "and",
        "Baden-Württemberg",
        "won",
        "1,000",
        "seats",
        ".",
    ]


def test_entities_slice_the_input_with_unicode_and_spacing(tiny_tagger: Tagger) -> None:
    """Decoded spans over odd text (non-ASCII, tabs, no-break spaces, emoji) map back exactly."""
    text = TEXTS[1]
    tokens = tokenize(text)
    labels = tiny_tagger.labels
    tags = ["O"] * len(tokens)
    words = [t.text for t in tokens]
    tags[words.index("Zoë")], tags[words.index("Saldaña")] = "B-person", "I-person"
    tags[words.index("François")], tags[words.index("Hollande")] = "B-politician", "I-politician"
    tags[words.index("France")] = "B-country"
    probs = np.full((len(tokens), len(labels)), 0.5 / (len(labels) - 1))
    for w, tag in enumerate(tags):
        probs[w, labels.index(tag)] = 0.5
    entities = entities_from(text, tokens, probs, tags, labels)
    # a span's score is its probability of its type: p(B-t) + p(I-t), averaged over its words
    score = round(0.5 + 0.5 / (len(labels) - 1), 4)
    assert [(e.text, e.label) for e in entities] == [
        ("Zoë   Saldaña", "person"),
        ("François Hollande", "politician"),
        ("France", "country"),
    ]
    for e in entities:
        assert text[e.start : e.end] == e.text and e.score == score
        assert e.source == "tagger"
        assert e.to_json() == {
            "start": e.start,
            "end": e.end,
            "text": e.text,
            "label": e.label,
            "score": score,
            "source": "tagger",
        }


def test_predict_texts_offsets(names_tagger: Tagger) -> None:
    out = predict_texts(TEXTS, model=names_tagger)
    assert [r["text"] for r in out] == TEXTS
    assert [found(r) for r in out] == EXPECTED
    for record in out:
        for e in record["entities"]:
            assert record["text"][e["start"] : e["end"]] == e["text"]
            assert e["source"] == "tagger"
    tagged = tag_texts(names_tagger, TEXTS[:1])[0]
    assert len(tagged.tags) == len(tagged.tokens) == tagged.probs.shape[0]


def test_llm_option_is_checked(tiny_tagger: Tagger) -> None:
    with pytest.raises(ConfigError, match="--llm: expected one of none, llama, gpt"):
        predict_texts("x", model=tiny_tagger, llm="claude")


def test_python_api_with_llm_routes_hard_sentences_to_smollm(
    names_tagger: Tagger, smollm_path: Path, tmp_path: Path
) -> None:
    """``cdlm.predict(..., llm="llama")`` runs the reasoning like the CLI (one expert, one
    round): at threshold 0.7 the two organisations (confidence 0.5) go to SmolLM2, the two
    persons (0.9) keep the tagger's answer; spans stay inside the text, sources are marked."""
    from cdlm.config import load_config

    cfg = load_config(
        None,
        {
            "llm.cache_dir": str(tmp_path / "cache"),
            "llm.max_tokens": 256,
            "routing.threshold": 0.7,
            "reasoning.experts": 1,
            "reasoning.rounds": 1,
            "reasoning.selfcheck": "off",
        },
    )
    out = predict_texts(
        TEXTS[:1],
        model=names_tagger,
        llm="llama",
        llm_model=str(smollm_path),
        config=cfg,
        explain=True,
    )
    (record,) = out
    assert record["text"] == TEXTS[0]
    assert record["llm"]["routed"] and record["llm"]["asked"] == 2
    kept = [(e["text"], e["label"]) for e in record["entities"] if e["source"] == "tagger"]
    assert kept == [("Angela Merkel", "person"), ("Baden-Württemberg", "person")]
    for e in record["entities"]:
        assert TEXTS[0][e["start"] : e["end"]] == e["text"]
        assert e["source"] == "tagger" or e["text"] in ("CDU", "U.S.")


def test_cli_predict_jsonl_and_conll(names_checkpoint: Path, tmp_path: Path) -> None:
    inp = tmp_path / "in.txt"
    inp.write_text("Merkel met Macron in Paris.\n\nThe SPD won.\n", encoding="utf-8")
    run = [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(names_checkpoint)]
    proc = subprocess.run([*run, "--input", str(inp)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in lines] == ["Merkel met Macron in Paris.", "", "The SPD won."]
    assert [[(e["text"], e["label"]) for e in r["entities"]] for r in lines] == [
        [("Merkel", "person"), ("Macron", "person"), ("Paris", "person")],
        [],
        [("The", "person"), ("SPD", "organisation")],
    ]
    for r in lines:
        assert all(r["text"][e["start"] : e["end"]] == e["text"] for e in r["entities"])

    # stdin and the CoNLL format, in-process (the model is loaded once)
    import typer
    from typer.testing import CliRunner

    from cdlm.cli import predict as predict_cli

    app = typer.Typer()
    predict_cli.register(app)
    app.command()(lambda: None)  # a second command keeps `predict` a subcommand
    res = CliRunner().invoke(
        app,
        ["predict", "--checkpoint", str(names_checkpoint), "--format", "conll", "-i", "-"],
        input="The SPD won.\n",
    )
    assert res.exit_code == 0, res.output
    rows = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert [r[:2] for r in rows] == [
        ["The", "B-person"], ["SPD", "B-organisation"], ["won", "O"], [".", "O"]
    ]  # fmt: skip


def test_package_level_predict(names_checkpoint: Path) -> None:
    import cdlm

    out = cdlm.predict(TEXTS[0], checkpoint=names_checkpoint)
    assert len(out) == 1 and out[0]["text"] == TEXTS[0]
    assert found(out[0]) == EXPECTED[0]
    assert all(TEXTS[0][e["start"] : e["end"]] == e["text"] for e in out[0]["entities"])
