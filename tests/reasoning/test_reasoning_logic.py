"""Reasoning logic with a scripted LLMBackend (faults, rounds, revisions) and no model calls.

The stages' real-model behaviour is covered in test_reasoning_smollm.py; here the answers are
scripted so that disagreement, contradictions, invented spans and unparseable answers happen
on purpose. Scripted answers are still validated by each stage's own output schema.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cdlm.config import ReasoningConfig
from cdlm.errors import TemplateError
from cdlm.reasoning.candidates import Candidate, Doc, Option, ground
from cdlm.reasoning.pipeline import reason, route
from cdlm.reasoning.routing import Router, calibrate
from cdlm.reasoning.selfcheck import revise
from cdlm.reasoning.stages import load_prompts
from cdlm.reasoning.templates import default_prompts_dir
from cdlm.reasoning.voting import Ballot, ChoiceAnswer, aggregate, vote


def vote_answer(schema, prefer: dict[int, str], messages=None) -> dict:
    """A vote for ``prefer[id]`` (else the first option): in a choice vote its letter, read
    from the prompt's option list; in a scores vote 5s for it and 1s elsewhere."""
    out = {}
    if issubclass(schema, ChoiceAnswer):
        for name in schema.model_fields:
            field = name.split("e", 1)[-1].lstrip("0123456789")  # "e2c0" (a joint panel) -> "c0"
            if not field.startswith("c"):
                out[name] = "why not"
                continue
            line = next(
                ln for ln in messages[1].content.splitlines() if ln.startswith(f"- {field} ")
            )
            options = dict(re.findall(r"([A-J])\) (\w+)", line.split(":", 1)[1]))
            want = prefer.get(name, prefer.get(int(field[1:])))  # by answer key, else by id
            out[name] = next((k for k, t in options.items() if t == want), "A")
        return out
    for name, field in schema.model_fields.items():
        cid = int(name[1:])
        types = [f.alias for n, f in field.annotation.model_fields.items() if n != "reason"]
        want = prefer.get(cid, types[0])
        out[name] = {t: [5, 5, 5] if t == want else [1, 1, 1] for t in types}
        if "reason" in field.annotation.model_fields:
            out[name]["reason"] = f"because {want}"
    return out


def test_candidates_spans_missed_and_options(doc_and_cands) -> None:
    doc, cands = doc_and_cands
    assert [(c.start, c.end, c.kind) for c in cands] == [(0, 2, "span"), (4, 5, "missed")]
    span, missed = cands
    assert span.text == "Angela Merkel" and span.tagger_type == "politician"
    assert span.option_types == ["politician", "person", "none"]
    assert span.confidence == pytest.approx(0.525) and span.margin == pytest.approx(0.15)
    assert missed.tagger_type is None and missed.confidence == pytest.approx(0.5)
    assert missed.option_types[0] == "politicalparty" and doc.text[22:25] == missed.text
    # a tied vote keeps the tagger's own decision: its type, or "none" for a missed span
    assert span.tie_order[0] == "politician" and missed.tie_order[0] == "none"
    tie = Ballot(0, 1, {"politicalparty": 0.5, "organisation": 0.5, "none": 0.5}, "")
    assert aggregate([tie], missed.tie_order)[0] == "none"


def test_grounding_finds_only_phrases_of_the_sentence() -> None:
    text = "Angela Merkel led the CDU ."
    assert ground("Merkel", text) == (7, 13)
    assert ground("the cdu", text) == (18, 25)
    assert ground("Barack Obama", text) is None and ground("  ", text) is None


def test_aggregation_rule_mean_of_means_ties_to_first_option() -> None:
    order = ["politician", "person", "none"]
    ballots = [
        Ballot(0, 1, {"politician": 1.0, "person": 0.25, "none": 0.0}, ""),
        Ballot(1, 1, {"politician": 0.25, "person": 0.75, "none": 0.0}, ""),
    ]
    assert aggregate(ballots, order) == ("politician", pytest.approx(0.625))
    tie = [Ballot(0, 1, {"politician": 0.5, "person": 0.5, "none": 0.5}, "")]
    assert aggregate(tie, order)[0] == "politician"
    assert (
        Ballot(0, 1, {"politician": 0.2, "person": 0.7, "none": 0.1}).preference(order) == "person"
    )


def test_disagreement_triggers_another_round_then_consensus_stops(scripted, doc_and_cands):
    doc, cands = doc_and_cands

    def script(stage, schema, messages):
        if stage == "discovery":
            return {"links": []}
        if stage == "selfcheck":
            return {
                n: {"context_type": "none", "verdict": "consistent"} for n in schema.model_fields
            }
        persona_b = "domain expert" in messages[1].content
        second = "Round 2" in messages[1].content
        prefer = {0: "person" if persona_b and not second else "politician"}
        return vote_answer(schema, prefer, messages)

    # the whole panel at once, one call per expert
    task = scripted(script, rounds=3, panel_confidence=None, panel_call="separate")
    out = reason(task, doc, cands)
    assert out.trace["rounds"] == 2 and out.trace["consensus"] is True
    stages = [s for s, _ in task.backend.requests]
    assert stages.count("vote") == 6  # 3 experts x 2 rounds, then consensus stops round 3
    # round 2 only re-asks the disputed candidate, and shows the others' votes
    round2 = [m for s, m in task.backend.requests if s == "vote" and "Round 2" in m[1].content]
    assert len(round2) == 3 and all('c1 "CDU"' not in m[1].content for m in round2)
    assert "person" in round2[0][1].content
    assert {e.text: e.label for e in out.entities}["Angela Merkel"] == "politician"

    agree = scripted(
        lambda st, sc, m: (
            {"links": []}
            if st == "discovery"
            else (
                vote_answer(sc, {}, m)
                if st == "vote"
                else {n: {"context_type": "none", "verdict": "consistent"} for n in sc.model_fields}
            )
        ),
        rounds=3,
        panel_confidence=None,
        panel_call="separate",
    )
    out = reason(agree, doc, cands)
    assert out.trace["rounds"] == 1
    assert [s for s, _ in agree.backend.requests].count("vote") == 3


def test_a_joint_panel_is_one_call_per_round_with_every_experts_ballot(scripted, doc_and_cands):
    """``panel_call = "joint"``: the experts answer in one call (one letter per expert and
    candidate), each letter a ballot of its own expert; a split re-asks the panel in one call."""
    doc, cands = doc_and_cands
    personas = ReasoningConfig().personas

    def script(stage, schema, messages):
        second = "Round 2" in messages[1].content
        return vote_answer(schema, {} if second else {"e2c0": "person"}, messages)

    task = scripted(script, rounds=3, panel_confidence=None)
    voted = vote(task, doc, cands, [])
    prompts = [m[1].content for _, m in task.backend.requests]
    assert len(prompts) == voted.calls == 2 and voted.rounds_run == 2 and voted.consensus
    for i, persona in enumerate(personas, 1):  # every expert listed under its key
        assert f"- e{i}: {persona}" in prompts[0]
    assert "Vote as" not in prompts[0]
    assert 'c1 "CDU"' not in prompts[1] and "Round 2" in prompts[1]  # only the split one
    merkel = next(c for c in cands if c.text == "Angela Merkel")
    first = {
        b.expert: b.preference(merkel.tie_order) for b in voted.ballots[merkel.id] if b.round == 1
    }
    assert first == {0: "politician", 1: "person", 2: "politician"}
    assert voted.decisions[merkel.id][0] == "politician"


def test_selfcheck_revises_only_on_contradiction(scripted, doc_and_cands) -> None:
    assert revise("politician", "person", "contradiction") == "person"
    assert revise("politician", "person", "consistent") == "politician"
    assert revise("politician", "politician", "contradiction") == "politician"
    doc, cands = doc_and_cands
    verdicts = {0: ("person", "contradiction"), 1: ("organisation", "consistent")}

    def script(stage, schema, messages):
        if stage == "discovery":
            return {"links": []}
        if stage == "vote":
            return vote_answer(schema, {1: "politicalparty"}, messages)
        assert "[ENTITY 0] led the [ENTITY 1] ." in messages[1].content  # placeholder text
        return {
            f"c{i}": {
                "context_type": t if t in ("person", "none") else "none",
                "verdict": v,
            }
            for i, (t, v) in verdicts.items()
        }

    out = reason(scripted(script, selfcheck_when="always"), doc, cands)
    labels = {e.text: e.label for e in out.entities}
    assert labels == {"Angela Merkel": "person", "CDU": "politicalparty"}
    assert out.entities[0].explanation["selfcheck"]["revised"] is True
    assert out.entities[1].explanation["selfcheck"]["revised"] is False


def test_grounding_drops_invented_spans_in_llm_only_mode(scripted) -> None:
    doc = Doc.from_tokens(["Angela", "Merkel", "led", "the", "CDU", "."])

    def script(stage, schema, messages):
        if stage == "discovery":
            return {
                "links": [
                    {"cause": "led", "effect": "Angela Merkel", "type": "politician"},
                    {"cause": "president", "effect": "Barack Obama", "type": "politician"},
                    {"cause": "imagined", "effect": "CDU", "type": "politicalparty"},
                ]
            }
        if stage == "vote":
            return vote_answer(schema, {}, messages)
        return {n: {"context_type": "none", "verdict": "consistent"} for n in schema.model_fields}

    out = reason(scripted(script), doc, None)
    assert out.dropped == 2  # "Barack Obama" (effect) and "imagined" (cause) are not in the text
    assert [(e.text, e.label, e.source) for e in out.entities] == [
        ("Angela Merkel", "politician", "llm")
    ]
    assert all(doc.text[e.start : e.end] == e.text for e in out.entities)


def test_unparseable_answers_fall_back_to_the_tagger_and_are_counted(scripted, doc_and_cands):
    doc, cands = doc_and_cands
    task = scripted(lambda st, sc, m: {"links": []} if st == "discovery" else None)
    out = route(task, doc, cands, cands)
    assert [(e.text, e.label, e.source) for e in out.entities] == [
        ("Angela Merkel", "politician", "tagger")
    ]  # the missed candidate stays O
    assert out.fallbacks == 2  # the first expert's call, then the rest of the panel's (joint)
    summary = task.log.summary()
    assert summary["vote"].fallbacks == 2 and summary["vote"].failures == 2
    assert summary["total"].requests == 3


def test_router_threshold_margin_budget(doc_and_cands) -> None:
    _, cands = doc_and_cands
    easy = [Candidate(0, 0, 1, "x", 0, 1, [Option("person", 0.99)], "span", "person", 0.99, 0.98)]
    sents = [cands, easy, [], cands[:1]]
    assert [len(h) for h in Router(threshold=0.0).select(sents)] == [0, 0, 0, 0]
    cands[1].margin = -0.1  # tagger chose O although a type had more mass: still not routed
    assert [len(h) for h in Router(threshold=0.0).select(sents)] == [0, 0, 0, 0]
    assert [len(h) for h in Router(threshold=0.52).select(sents)] == [1, 0, 0, 0]
    assert [len(h) for h in Router(threshold=0.6).select(sents)] == [2, 0, 0, 1]
    assert [len(h) for h in Router(margin=0.2).select(sents)] == [2, 0, 0, 1]
    assert [len(h) for h in Router(threshold=0.6, budget=0.25).select(sents)] == [2, 0, 0, 0]
    assert sum(1 for h in Router(budget=0.5).select(sents) if h) == 2


def test_calibration_routes_nothing_when_the_llm_only_hurts() -> None:
    diffs = [0.2, 0.4, 0.6, 0.9, 1.0]
    best, points = calibrate(diffs, [0.2, 0.4], lambda t: (0.8 - t, int(t * 10)))
    assert best.share == 0.0 and best.threshold == 0.0 and len(points) == 3
    best, _ = calibrate(diffs, [0.2, 0.4], lambda t: (0.5 + t, 0))
    assert best.share == 0.4 and 0.4 < best.threshold < 0.6
    # A gain below min_gain is noise: route nothing (the 0.2 share gains only 0.004).
    best, _ = calibrate(diffs, [0.2, 0.4], lambda t: (0.5 + 0.004 * (t > 0), 0), min_gain=0.01)
    assert best.share == 0.0
    best, _ = calibrate(diffs, [0.2], lambda t: (0.5 + 0.02 * (t > 0), 0), min_gain=0.01)
    assert best.share == 0.2


def test_prompts_check_passes_on_the_shipped_prompts_and_reports_file_line(tmp_path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "cdlm", "prompts", "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    broken = tmp_path / "prompts"
    import shutil

    shutil.copytree(default_prompts_dir(), broken)
    vote = broken / "vote.jinja"
    lines = vote.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if "{{ c.text }}" in ln)
    lines[at] = lines[at].replace("{{ c.text }}", "{{ c.nmae }}")
    vote.write_text("\n".join(lines) + "\n")
    disc = broken / "discovery.jinja"
    disc.write_text(disc.read_text().replace("{{ sentence }}", "{{ sentense }}"))
    res = subprocess.run(
        [sys.executable, "-m", "cdlm", "prompts", "check", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert f"{vote}:{at + 1}: " in res.stderr and "nmae" in res.stderr
    assert f"{disc}:" in res.stderr and "unknown variable 'sentense'" in res.stderr
    assert "required variable 'sentence' is never used" in res.stderr
    assert "Traceback" not in res.stderr


def test_broken_template_fails_at_load_with_file_and_line(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(default_prompts_dir(), folder)
    (folder / "selfcheck.jinja").write_text("{% block system %}x{% endblock %}\n{% if %}\n")
    with pytest.raises(TemplateError, match=r"selfcheck\.jinja:2: "):
        load_prompts(folder)


def test_predict_llm_flags_bad_input_in_one_line() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "cdlm", "predict", "--llm", "llama", "--format", "conll", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: --format conll")
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
