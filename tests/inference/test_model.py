"""The CDLM model object: output shapes, offsets, save/load, streams, routing flags.

Quality claims use the real default model and skip when it is not built; the mechanics run on
``tiny_bundle`` (two heads, built by the same recipe in seconds) and ``tiny_checkpoint`` (a
``cdlm train`` run) so they are always tested.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cdlm import CDLM
from cdlm.config import load_config
from cdlm.errors import ConfigError, DataError, ModelNotFoundError
from cdlm.runs import model_dir, shipped_dir

MERKEL = "Angela Merkel met Emmanuel Macron in Paris to discuss the European Union budget."
KEYS = {"start", "end", "text", "label", "score", "source"}
ODD = [
    "  Zoë   Saldaña\tmet\u00a0François Hollande in Besançon (France)…  ",
    "北京 hosted the 2008 Summer Olympics 🎉 and Emmanuel Macron visited Berlin.",
    "Barack Obama and Angela Merkel spoke with the United Nations in New York.",
]


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> CDLM:
    return CDLM.from_pretrained(tiny_bundle)


@pytest.fixture(scope="module")
def default(default_model_dir: Path) -> CDLM:
    return CDLM.from_pretrained("default")


def _by_text(entities: list[dict]) -> dict[str, str]:
    return {e["text"]: e["label"] for e in entities}


# --- the real default model ------------------------------------------------------------------


def test_default_model_finds_merkel_macron_paris(default: CDLM) -> None:
    assert default.domains == ["news", "politics", "science", "music", "literature", "ai"]
    assert default.default_domain == "news"
    news = default.predict(MERKEL)
    assert news, "the default model found no entity"
    assert all(set(e) == KEYS and MERKEL[e["start"] : e["end"]] == e["text"] for e in news)
    found = _by_text(news)
    assert found["Angela Merkel"] == "person" and found["Emmanuel Macron"] == "person"
    assert found["Paris"] == "location"
    assert all(0.0 <= e["score"] <= 1.0 and e["source"] == "tagger" for e in news)
    politics = _by_text(default.predict(MERKEL, domain="politics"))
    assert politics["Angela Merkel"] in ("politician", "person")
    assert politics["Emmanuel Macron"] in ("politician", "person")


def test_default_model_offsets_on_odd_text(default: CDLM) -> None:
    out = default.predict(ODD, domain="politics")
    assert len(out) == len(ODD)
    assert sum(len(ents) for ents in out) >= 3, out  # entities exist before offsets are checked
    for text, ents in zip(ODD, out, strict=True):
        for e in ents:
            assert 0 <= e["start"] < e["end"] <= len(text)
            assert text[e["start"] : e["end"]] == e["text"] == e["text"].strip()


def test_threshold_and_labels_on_the_default_model(default: CDLM) -> None:
    full = default.predict(ODD + [MERKEL], domain="politics")
    scores = sorted(e["score"] for ents in full for e in ents)
    assert scores[0] < scores[-1], scores
    cut = (scores[0] + scores[-1]) / 2
    kept = default.predict(ODD + [MERKEL], domain="politics", threshold=cut)
    assert 0 < sum(map(len, kept)) < len(scores)
    for ents, all_ents in zip(kept, full, strict=True):
        assert [e for e in all_ents if e["score"] >= cut] == ents
    persons = default.predict_entities(MERKEL, labels=["person"], threshold=0.0)
    assert {e["text"] for e in persons} >= {"Angela Merkel", "Emmanuel Macron"}
    assert {e["label"] for e in persons} == {"person"}


def test_default_model_save_load_gives_identical_predictions(default: CDLM, tmp_path: Path) -> None:
    again = CDLM.from_pretrained(default.save_pretrained(tmp_path / "copy"))
    for domain in default.domains:
        first = default.predict(ODD + [MERKEL], domain=domain)
        assert any(first)
        assert again.predict(ODD + [MERKEL], domain=domain) == first


# --- mechanics on the tiny models ------------------------------------------------------------


def test_predict_shapes(bundle: CDLM) -> None:
    one = bundle.predict(MERKEL)
    assert isinstance(one, list) and all(isinstance(e, dict) for e in one)
    many = bundle.predict([MERKEL, "", "   ", ODD[0]], domain="politics")
    assert isinstance(many, list) and len(many) == 4
    assert all(isinstance(ents, list) for ents in many) and many[1] == many[2] == []
    for ents in many:
        assert all(set(e) == KEYS for e in ents)


def test_domains_labels_and_aliases(bundle: CDLM) -> None:
    assert bundle.domains == ["news", "politics"] and bundle.default_domain == "news"
    assert bundle.resolve("conll2003") == "news" and bundle.data_domain("news") == "conll2003"
    assert "politician" in bundle.labels("politics") and "politician" not in bundle.labels()
    with pytest.raises(ConfigError, match="unknown domain 'sports': this model has news"):
        bundle.predict(MERKEL, domain="sports")
    with pytest.raises(ConfigError, match=r"'persn' not in domain 'politics' \(its types: "):
        bundle.predict_entities(MERKEL, labels=["persn"], domain="politics")


def test_heads_share_one_encoder(bundle: CDLM) -> None:
    news, politics = bundle.tagger("news"), bundle.tagger("politics")
    assert news.encoder is politics.encoder and news.casing is politics.casing
    assert news.head is not politics.head and news.labels != politics.labels
    tokens = [MERKEL.split()]
    assert bundle.tag_tokens(tokens, "politics") == politics.predict_tags(tokens)


def test_save_load_round_trip_is_exact(bundle: CDLM, tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Same word probabilities after a round trip, for every head and for a `cdlm train` run."""
    words = [t.split() for t in [MERKEL, *ODD]]
    again = CDLM.from_pretrained(bundle.save_pretrained(tmp_path / "bundle"))
    assert again.domains == bundle.domains and again.default_domain == "news"
    for domain in bundle.domains:
        a = bundle.tagger(domain).predict_proba(words)
        b = again.tagger(domain).predict_proba(words)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert again.predict(ODD, domain=domain) == bundle.predict(ODD, domain=domain)
    single = CDLM.from_pretrained(tiny_checkpoint)
    assert single.domains == ["politics"]
    copy = CDLM.from_pretrained(single.save_pretrained(tmp_path / "single"))
    a, b = single.tagger().predict_proba(words), copy.tagger().predict_proba(words)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_stream_keeps_fields_order_and_reads_lazily(bundle: CDLM) -> None:
    pulled = []

    def source():
        for i in itertools.count():
            pulled.append(i)
            yield {"id": f"doc-{i}", "text": ODD[i % 3], "meta": {"n": i}} if i % 2 else ODD[0]

    out = itertools.islice(bundle.stream(source(), domain="politics", batch_size=3), 7)
    records = list(out)
    assert len(pulled) == 9  # three batches of three were read, nothing more (constant memory)
    for i, rec in enumerate(records):
        if i % 2:
            assert (rec["id"], rec["meta"], rec["text"]) == (f"doc-{i}", {"n": i}, ODD[i % 3])
        else:
            assert set(rec) == {"text", "entities", "routing"} and rec["text"] == ODD[0]
        assert rec["routing"]["routed"] == 0 and rec["routing"]["rule"] == "no LLM"
        assert rec["routing"]["candidates"] >= len(rec["entities"])
    with pytest.raises(DataError, match="record 2: field 'text': expected a string"):
        list(bundle.stream(["ok", {"id": 1}]))


def test_missing_models_say_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDLM_HOME", str(tmp_path))
    assert CDLM.from_pretrained("default").path == shipped_dir()  # shipped: no build needed
    with pytest.raises(ModelNotFoundError, match="cdlm model build-default"):
        CDLM.from_pretrained("default-build")  # not built in this empty cdlm home
    # A package whose shipped folder is gone (a broken install) says to reinstall.
    monkeypatch.setattr("cdlm.inference.model.shipped_dir", lambda: tmp_path / "gone")
    with pytest.raises(ModelNotFoundError, match="shipped default model is missing; reinstall"):
        CDLM.from_pretrained("default")
    # A path that is not there names the models folder the bare names are looked up in.
    models = str(model_dir().parent)
    with pytest.raises(ModelNotFoundError, match=rf"nor a model name in {re.escape(models)}\)"):
        CDLM.from_pretrained(tmp_path / "nothing" / "here")


def _smollm_config(smollm_path: Path, tmp_path: Path):  # -> CdlmConfig
    """SmolLM2 with one expert, one round and no self-check: the cheapest real LLM path."""
    return load_config(
        None,
        {
            "llm.model": str(smollm_path),
            "llm.cache_dir": str(tmp_path / "cache"),
            "llm.max_tokens": 256,
            "reasoning.experts": 1,
            "reasoning.rounds": 1,
            "reasoning.selfcheck": "off",
        },
    )


def test_route_flags_with_smollm(tiny_checkpoint: Path, smollm_path: Path, tmp_path: Path) -> None:
    """hard = the config rule, all = every candidate, none = no LLM call; each record says so."""
    cfg = _smollm_config(smollm_path, tmp_path)
    m = CDLM.from_pretrained(tiny_checkpoint, config=cfg)
    text = [MERKEL]
    (none,) = m.stream(text, llm="llama", route="none")
    assert none["routing"]["routed"] == 0 and none["routing"]["forced"] is True
    assert m.usage.summary()["total"].requests == 0
    (hard,) = m.stream(text, llm="llama")
    assert hard["routing"]["rule"] == "confidence < 0.60" and hard["routing"]["forced"] is False
    (every,) = m.stream(text, llm="llama", route="all", explain=True)
    routing = every["routing"]
    assert routing["candidates"] > 0 and routing["routed"] == routing["candidates"]
    assert routing["forced"] is True and every["llm"]["asked"] == routing["candidates"]
    assert m.usage.summary()["total"].requests > 0
    for e in every["entities"]:
        assert MERKEL[e["start"] : e["end"]] == e["text"]
    with pytest.raises(ConfigError, match="route='all' needs an LLM"):
        m.predict(MERKEL, route="all")
    with pytest.raises(ConfigError, match="route: expected one of hard, all, none"):
        m.predict(MERKEL, llm="llama", route="some")  # type: ignore[arg-type]


def test_import_is_light_and_exports_the_model() -> None:
    code = (
        "import sys, cdlm; assert 'torch' not in sys.modules, 'torch imported by import cdlm';"
        "from cdlm import CDLM; print(CDLM.__module__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cdlm.inference.model"
    typed = Path(__file__).resolve().parents[2] / "cdlm" / "py.typed"
    assert typed.is_file()


def test_cli_predict_prints_records_with_routing(tiny_bundle: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cdlm", "predict", "--checkpoint", str(tiny_bundle)]
        + ["--domain", "politics", MERKEL, ODD[1]],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in records] == [MERKEL, ODD[1]]
    assert all(set(r) == {"text", "entities", "routing"} for r in records)


def test_stream_tokens_takes_the_text_path(bundle: CDLM) -> None:
    """Pre-tokenised sentences go through the text path's steps: a sentence's tokens give the
    record of its tokens joined by single spaces (labels and threshold as well); the tagging and
    the reasoning apart (tagged_tokens + reason) give the same records."""
    from cdlm.data.text import tokenize

    words = [[t.text for t in tokenize(text)] for text in [MERKEL, *ODD]]
    joined = [" ".join(w) for w in words]
    restricted = {"labels": bundle.labels("politics")[:3], "threshold": 0.2}
    for kw in ({}, restricted):
        by_text = list(bundle.stream(joined, "politics", batch_size=2, **kw))
        by_tokens = list(bundle.stream_tokens(words, "politics", batch_size=2, **kw))
        assert by_tokens == by_text and sum(len(r["entities"]) for r in by_text) > 0
        entities = bundle.predict_tokens(words, "politics", batch_size=2, **kw)
        assert entities == [r["entities"] for r in by_text]
    whole = list(bundle.stream(joined, "politics", batch_size=len(joined)))
    steps = list(bundle.reason(bundle.tagged_tokens(words, "politics"), "politics"))
    assert [r.record for r in steps] == whole
    assert [len(r.candidates) for r in steps] == [r["routing"]["candidates"] for r in whole]
    (record,) = bundle.stream_tokens([{"id": 7, "tokens": words[0]}], "politics")
    assert (record["id"], record["tokens"], record["text"]) == (7, words[0], joined[0])
    with pytest.raises(DataError, match="record 2: expected a list of tokens"):
        list(bundle.stream_tokens([words[0], MERKEL]))


def test_tokens_path_asks_the_llm_what_the_text_path_asks(
    tiny_checkpoint: Path, smollm_path: Path, tmp_path: Path
) -> None:
    """With SmolLM2: the tokens path sends the text path's prompts (the text path then finds
    every answer in the cache) and makes the same record; a ready Task and a Router (what
    evaluation passes to CDLM.reason) go through the same steps."""
    from cdlm.config import llm_run_config
    from cdlm.data.text import tokenize
    from cdlm.reasoning.routing import Router
    from cdlm.reasoning.stages import make_task

    cfg = llm_run_config(_smollm_config(smollm_path, tmp_path), "llama")
    m = CDLM.from_pretrained(tiny_checkpoint, config=cfg)
    words = [t.text for t in tokenize(MERKEL)]
    (by_tokens,) = m.stream_tokens([words], llm="llama", route="all", explain=True)
    calls = m.usage.summary()["total"].calls
    assert calls > 0 and by_tokens["routing"]["routed"] > 0
    (by_text,) = m.stream([" ".join(words)], llm="llama", route="all", explain=True)
    assert m.usage.summary()["total"].calls == calls  # every prompt was asked already
    assert by_tokens == by_text
    task = make_task(cfg, m.data_domain(), m.labels(), explain=True)
    tagged = m.tagged_tokens([words])
    (done,) = m.reason(tagged, llm=task, route=Router.everything(), explain=True)
    routing = {**by_text["routing"], "rule": "every candidate", "forced": False}
    assert done.record == {**by_text, "routing": routing}
    assert task.log.summary()["total"].calls == 0 < task.log.summary()["total"].requests
    with pytest.raises(ConfigError, match="a Router needs an LLM"):
        list(m.reason(tagged, route=Router.everything()))
