"""Routed, calibrated LLM evaluation (``cdlm eval --llm gpt --calibrate``) against hand-computed
numbers: dev F1 per routed share, the chosen threshold, the routed test F1 and the decisions the
LLM changed for the better and for the worse.

Real parts: a saved tagger checkpoint (``shape_tagger.py``: its probabilities are set by hand, so
every candidate and its confidence is known), the CLI, the ``gpt`` backend with the real
``openai`` client, the answer cache, and HTTP on 127.0.0.1. The LLM's answers are scripted by the
fault server, per sentence and mention, whatever order the requests come in.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from llm_fault_server import FaultServer, Step
from shape_tagger import bio, write_shape_checkpoint
from test_provenance import assert_commit_stamp

from cdlm.cli import main
from cdlm.data.bio import Sentence, write_bio

LABELS = bio(["event", "misc", "organisation", "person", "politicalparty", "politician"])
# P(tag | word shape). Span confidence = the tagger's probability of its own type:
#   init-cap  "Merkel"  politician 0.90   (easy)
#   mixed     "McCain"  person     0.70
#   all-caps  "NATO"    organisation 0.50
#   has-digit "G20"     tagged O with P(O) = 0.45 < 0.6: a likely-missed candidate, conf 0.45
TABLE = {
    "init-cap": {"B-politician": 0.90, "B-person": 0.06, "O": 0.04},
    "mixed-case": {"B-person": 0.70, "B-politician": 0.26, "O": 0.04},
    "all-caps": {"B-organisation": 0.50, "B-politicalparty": 0.40, "O": 0.10},
    "has-digit": {"O": 0.45, "B-event": 0.30, "B-misc": 0.25},
}


def sent(*pairs: str) -> Sentence:
    words = [p.rsplit("/", 1) for p in pairs]
    return Sentence(tuple(w for w, _ in words), tuple(t for _, t in words))


# dev (calibration); difficulty = lowest confidence in the sentence
DEV = [
    sent("Merkel/B-politician", "visited/O", "NATO/B-politicalparty", "./O"),  # 0.50
    sent("McCain/B-person", "spoke/O", "./O"),  # 0.70
    sent("the/O", "G20/B-event", "met/O", "./O"),  # 0.45
    sent("Merkel/B-politician", "spoke/O", "./O"),  # 0.90
    sent("they/O", "spoke/O", "./O"),  # no candidate (1.0)
]
TEST = [
    sent("NATO/B-organisation", "and/O", "McCain/B-person", "met/O", "./O"),
    sent("the/O", "G20/B-event", "summit/O", "./O"),
    sent("Merkel/B-politician", "spoke/O", "./O"),
    sent("a/O", "G7/O", "meeting/O", "./O"),
    sent("the/O", "G8/B-event", "met/O", "./O"),
]
# The scripted LLM: (sentence, mention) -> its vote.
ANSWERS = {
    ("Merkel visited NATO .", "Merkel"): "politician",  # same as the tagger
    ("Merkel visited NATO .", "NATO"): "politicalparty",  # right: better
    ("McCain spoke .", "McCain"): "person",  # same as the tagger
    ("the G20 met .", "G20"): "event",  # a missed entity found: better
    ("Merkel spoke .", "Merkel"): "none",  # a right entity dropped: worse
    ("NATO and McCain met .", "NATO"): "politicalparty",  # wrong on test: worse
    ("the G20 summit .", "G20"): "event",  # better
    ("a G7 meeting .", "G7"): "none",  # agrees with the tagger's O: no change
    ("the G8 met .", "G8"): "event",  # better
}


def answer(body: dict) -> Step:
    """Discovery: no links. Voting (the default lettered choice): the letter of the scripted
    type (a mention the script does not expect gets "none"; the test checks which mentions
    were asked)."""
    user = body["messages"][-1]["content"]
    if "lettered options" not in user:
        assert "Task: causal evidence" in user, user
        return Step(content=json.dumps({"links": []}))
    sentence = re.search(r'Sentence: """(.*?)"""', user).group(1)
    votes = {}
    for cid, mention, options in re.findall(r'- c(\d+) "(.*?)": (.*)', user):
        chosen = ANSWERS.get((sentence, mention), "none")  # unscripted: see asked_mentions
        letters = dict(re.findall(r"([A-Z])\) (\w+)", options))
        assert chosen in letters.values(), (chosen, letters)
        votes[f"c{cid}"] = next(k for k, t in letters.items() if t == chosen)
    return Step(content=json.dumps(votes))


def f1(correct: int, predicted: int, gold: int) -> float:
    p, r = correct / predicted, correct / gold
    return 2 * p * r / (p + r)


def asked_mentions(requests: list[dict]) -> list[str]:
    return [
        m
        for body in requests
        for m in re.findall(r'- c\d+ "(.*?)": A\)', body["messages"][-1]["content"])
    ]


def test_calibrated_routing_end_to_end(fault_server: FaultServer, tmp_path: Path, monkeypatch):
    data = tmp_path / "data"
    for split, sentences in {"train": DEV, "dev": DEV, "test": TEST}.items():
        write_bio(data / "politics" / f"{split}.txt", sentences)
    checkpoint = write_shape_checkpoint(tmp_path / "tagger", LABELS, TABLE)
    config = tmp_path / "llm.toml"
    config.write_text(
        f'[llm]\ncache_dir = "{tmp_path / "cache"}"\n'
        '[reasoning]\nexperts = 1\nrounds = 1\nselfcheck = "off"\n'
        "[routing]\ncalibration_shares = [0.2, 0.4, 0.8]\ncalibration_min_gain = 0.01\n",
        encoding="utf-8",
    )
    fault_server.responder = answer
    results = tmp_path / "results"
    args = ["eval", "--checkpoint", str(checkpoint), "--data-dir", str(data), "--llm", "gpt"]
    args += ["--base-url", fault_server.base_url, "--calibrate", "--config", str(config)]
    monkeypatch.setattr(sys, "argv", ["cdlm", *args, "--results-dir", str(results)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    res = json.loads((results / "politics__llm-gpt__seed1.json").read_text(encoding="utf-8"))

    # Calibration. Difficulties 0.45, 0.50, 0.70, 0.90 (+ one sentence without candidates);
    # share s routes round(5 s) sentences, threshold = midpoint to the next difficulty.
    # Dev gold: 5 spans. Tagger alone: Merkel, McCain, Merkel right, NATO wrong type.
    expected = [
        # share, threshold, routed sentences, dev F1
        (0.0, 0.0, 0, f1(3, 4, 5)),
        (0.2, 0.475, 1, f1(4, 5, 5)),  # + G20 found
        (0.4, 0.6, 2, f1(5, 5, 5)),  # + NATO retyped right
        (0.8, 0.900001, 4, f1(4, 4, 5)),  # + McCain kept, the 2nd Merkel dropped
    ]
    got = [(p["share"], p["threshold"], p["routed"], p["dev_f1"]) for p in res["calibration"]]
    assert len(got) == len(expected)
    for (share, thr, routed, dev_f1), want in zip(got, expected, strict=True):
        assert (share, routed) == (want[0], want[2])
        assert thr == pytest.approx(want[1], abs=1e-3) and dev_f1 == pytest.approx(want[3])
    assert res["threshold"] == pytest.approx(0.6, abs=1e-3)  # the best dev F1
    cal = res["calibration_stats"]
    assert (cal["sentences"], cal["routed"], cal["asked_candidates"]) == (5, 4, 5)
    assert (cal["changed"], cal["changed_better"], cal["changed_worse"]) == (3, 2, 1)
    # one vote per routed sentence (4), discovery only where a candidate is below
    # reasoning.discovery_confidence = 0.6 (the 0.45 and 0.50 sentences: 2)
    assert cal["calls"] == 6 and cal["fallbacks"] == 0

    # Test at threshold 0.6: NATO (0.50), G20, G7 and G8 (0.45) are asked; McCain (0.70) and
    # Merkel (0.90) keep the tagger's answer. Gold: 5 spans (G7 is not an entity).
    assert res["tagger"]["f1"] == pytest.approx(f1(3, 3, 5))
    assert res["routed"]["f1"] == pytest.approx(f1(4, 5, 5))  # NATO wrong, G20 and G8 found
    routed = res["routed_stats"]
    assert (routed["sentences"], routed["routed"], routed["asked_candidates"]) == (5, 4, 4)
    assert routed["routed_share"] == pytest.approx(0.8)
    assert (routed["changed"], routed["changed_better"], routed["changed_worse"]) == (3, 2, 1)
    assert routed["calls"] == 8 and routed["fallbacks"] == 0  # all four below 0.6: discovery

    # What the server saw: calibration asked every dev candidate, the test only the hard ones.
    assert fault_server.count == 6 + 8
    assert sorted(asked_mentions(fault_server.requests[:6])) == sorted(
        ["Merkel", "NATO", "McCain", "G20", "Merkel"]
    )
    assert sorted(asked_mentions(fault_server.requests[6:])) == ["G20", "G7", "G8", "NATO"]
    assert_commit_stamp(res["provenance"])
    md = (results / "politics__llm-gpt__seed1.md").read_text(encoding="utf-8")
    assert "calibrated routing, threshold 0.600" in md and "| 2/1 |" in md
