"""The `cdlm` spaCy component in a real `spacy.blank("en")` pipeline: entities as doc.ents with
cdlm's exact character offsets, scores and sources, batched through the model in nlp.pipe,
spans that do not align with spaCy's tokens counted (never moved), found by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc

from cdlm.inference.model import CDLM

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def texts(small_crossner: Path) -> list[str]:
    """Real politics dev sentences, as running text."""
    from cdlm.data.registry import load_split

    return [" ".join(s.tokens) for s in load_split("politics", "dev", small_crossner)[:12]]


@pytest.fixture(scope="module")
def expected(tiny_checkpoint: Path, texts: list[str]) -> list[list[dict]]:
    out = CDLM.from_pretrained(tiny_checkpoint).predict(texts)
    assert sum(map(len, out)) > 5  # enough entities to compare
    return out


def _nlp(checkpoint: Path, **config):
    import cdlm.spacy.component  # noqa: F401  (registers the factory; the entry point test below checks the other way)

    nlp = spacy.blank("en")
    nlp.add_pipe("cdlm", config={"model": str(checkpoint), **config})
    return nlp


def test_doc_ents_scores_and_sources(tiny_checkpoint: Path, texts, expected) -> None:
    nlp = _nlp(tiny_checkpoint, domain="politics")
    for text, ents in zip(texts, expected, strict=True):
        doc = nlp(text)
        got = [
            {"start": e.start_char, "end": e.end_char, "text": e.text, "label": e.label_,
             "score": e._.cdlm_score, "source": e._.cdlm_source}
            for e in doc.ents
        ]  # fmt: skip
        assert got == ents  # all align with spaCy's tokens here: same offsets, nothing moved
        group = doc.spans["cdlm"]
        assert [(s.start_char, s.end_char) for s in group] == [
            (e.start_char, e.end_char) for e in doc.ents
        ]
        assert group.attrs["scores"] == [e["score"] for e in ents]
        assert group.attrs["sources"] == [e["source"] for e in ents]
        assert doc.user_data["cdlm"]["unaligned"] == []


def test_pipe_sends_each_batch_to_the_model_once(tiny_checkpoint: Path, texts, expected) -> None:
    nlp = _nlp(tiny_checkpoint)
    component = nlp.get_pipe("cdlm")
    calls: list[int] = []
    predict = component.model.predict

    def counting(batch, **kwargs):
        calls.append(len(batch))
        return predict(batch, **kwargs)

    component.model.predict = counting
    try:
        docs = list(nlp.pipe(texts, batch_size=5))
    finally:
        component.model.predict = predict
    assert calls == [5, 5, 2]
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == [
        [(e["start"], e["end"], e["label"]) for e in ents] for ents in expected
    ]


class TrigramTokenizer:
    """A tokenizer with a boundary every 3 characters: most entity ends fall inside a token."""

    def __init__(self, vocab) -> None:
        self.vocab = vocab

    def __call__(self, text: str) -> Doc:
        words = [text[k : k + 3] for k in range(0, len(text), 3)]
        return Doc(self.vocab, words=words, spaces=[False] * len(words))


def test_unaligned_entities_are_counted_not_moved(
    tiny_checkpoint: Path, texts, expected, caplog: pytest.LogCaptureFixture
) -> None:
    nlp = _nlp(tiny_checkpoint)
    nlp.tokenizer = TrigramTokenizer(nlp.vocab)
    unaligned_total = 0
    with caplog.at_level("WARNING", logger="cdlm.spacy"):
        docs = list(nlp.pipe(texts))
    for text, doc, ents in zip(texts, docs, expected, strict=True):
        fits = [
            e for e in ents if e["start"] % 3 == 0 and (e["end"] % 3 == 0 or e["end"] == len(text))
        ]
        rest = [e for e in ents if e not in fits]
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [
            (e["start"], e["end"], e["label"]) for e in fits
        ]
        assert doc.user_data["cdlm"]["unaligned"] == rest
        unaligned_total += len(rest)
    assert unaligned_total > 0
    warned = [r for r in caplog.records if "do not align with spaCy's tokens" in r.getMessage()]
    assert len(warned) == sum(1 for d in docs if d.user_data["cdlm"]["unaligned"])


def test_unknown_domain_fails_at_add_pipe(tiny_checkpoint: Path) -> None:
    from cdlm.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown domain 'music'"):
        _nlp(tiny_checkpoint, domain="music")


def test_found_through_the_entry_point(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """spaCy finds "cdlm" by the `spacy_factories` entry point declared in pyproject.toml,
    without cdlm being imported first (an installed distribution, made here from pyproject)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    points = project["entry-points"]["spacy_factories"]
    dist = tmp_path / "cdlm_entry_points-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cdlm-entry-points\nVersion: 0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in points.items())
    (dist / "entry_points.txt").write_text(f"[spacy_factories]\n{lines}", encoding="utf-8")
    script = (
        "import json, sys, spacy\n"
        "assert not any(m.startswith('cdlm') for m in sys.modules)\n"
        "nlp = spacy.blank('en')\n"  # spaCy loads the entry points it finds here
        f"nlp.add_pipe('cdlm', config={{'model': {str(tiny_checkpoint)!r}}})\n"
        "doc = nlp('The SPD won the election in Lower Saxony .')\n"
        "print(json.dumps([nlp.pipe_names, [(e.text, e.label_) for e in doc.ents]]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    names, ents = json.loads(proc.stdout.strip().splitlines()[-1])
    assert names == ["cdlm"]
    model = CDLM.from_pretrained(tiny_checkpoint)
    assert ents == [
        [e["text"], e["label"]] for e in model.predict("The SPD won the election in Lower Saxony .")
    ]
