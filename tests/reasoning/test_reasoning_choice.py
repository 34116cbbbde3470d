"""The vote as a lettered choice, the rules that save calls, reasons on request, and the
concurrency of the LLM stage.

Scripted answers for the rules; the real ``openai`` client against the loopback fault server
for invalid letters (repaired), the schema actually sent, and concurrency (every request is
answered from its own content, so the answers do not depend on the order they arrive in).
"""

from __future__ import annotations

import pytest
from conftest import POLITICS, sentence
from llm_fault_server import Step, running, schema_answer
from pydantic import ValidationError

from cdlm.config import CdlmConfig, LLMConfig, ReasoningConfig
from cdlm.llm.base import LLMResult, Message, Usage
from cdlm.llm.gpt import GptBackend
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Option
from cdlm.reasoning.pipeline import reason, route_many
from cdlm.reasoning.stage import Task
from cdlm.reasoning.stages import load_prompts, make_task
from cdlm.reasoning.voting import ballots_of, choice_schema, vote_schema, weigh


@pytest.fixture(autouse=True)
def _loopback_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def menu(cands):
    return tuple((c.id, tuple(c.option_types)) for c in cands)


def test_choice_letters_become_the_candidates_types(doc_and_cands) -> None:
    _, cands = doc_and_cands
    assert cands[0].option_types == ["politician", "person", "none"]
    assert cands[1].option_types == ["politicalparty", "person", "none"]
    schema = choice_schema(menu(cands))
    answer = schema.model_validate({"c0": "B", "c1": "C"})
    ballots = ballots_of(LLMResult(answer, Usage()), cands, expert=0, rnd=1)
    assert ballots[0].scores == {"politician": 0.0, "person": 1.0, "none": 0.0}
    assert ballots[1].preference(cands[1].tie_order) == "none"
    probs = {"c0": {"A": 0.6, "B": 0.3, "C": 0.1}, "c1": {"A": 0.2, "B": 0.1, "C": 0.7}}
    scored = ballots_of(LLMResult(answer, Usage(), probs), cands, expert=2, rnd=1)
    assert scored[0].scores == {"politician": 0.6, "person": 0.3, "none": 0.1}
    assert scored[0].preference(cands[0].tie_order) == "politician" and scored[0].expert == 2


def test_choice_schema_refuses_invalid_letters_and_missing_candidates(doc_and_cands) -> None:
    _, cands = doc_and_cands
    schema = choice_schema(menu(cands))
    for bad, where in [
        ({"c0": "D", "c1": "A"}, "c0"),  # only A-C offered
        ({"c0": "a", "c1": "A"}, "c0"),  # letters are capitals
        ({"c0": "politician", "c1": "A"}, "c0"),  # a type name is not a letter
        ({"c0": "A"}, "c1"),  # a candidate left out
        ({"c0": "A", "c1": "B", "c7": "A"}, "c7"),  # a candidate that was not asked about
    ]:
        with pytest.raises(ValidationError, match=where):
            schema.model_validate(bad)
    assert list(choice_schema(menu(cands), 30).model_fields) == ["c0", "c1", "r0", "r1"]


def test_an_invalid_letter_is_repaired_through_the_real_client(doc_and_cands) -> None:
    """The server answers a letter that was not offered; the validation error goes back to the
    model, and its second answer counts."""
    doc, cands = doc_and_cands
    with running() as server:
        server.script = [
            Step(content='{"links":[]}'),
            Step(content='{"c0":"E","c1":"A"}'),
            Step(content='{"c0":"B","c1":"A"}'),
        ]
        server.default = Step(content=schema_answer)
        backend = GptBackend(LLMConfig(backend="gpt", base_url=server.base_url, concurrency=1))
        # the letters as answered, not weighed by the tagger (that rule is tested apart)
        cfg = ReasoningConfig(experts=1, tagger_prior=False)
        task = Task(backend, load_prompts(), cfg, "politics", POLITICS, UsageLog())
        out = reason(task, doc, cands)
        repair = server.requests[2]["messages"][-1]["content"]
    assert "c0" in repair and "not valid" in repair
    assert task.log.summary()["vote"].retries == 1 and out.fallbacks == 0
    assert out.entities[0].explanation["votes"][0]["scores"]["person"] == 1.0


def _vote_prompts(task: Task) -> list[str]:
    return [m[1].content for s, m in task.backend.requests if s == "vote"]


def _script(prefer_type: dict[str, str]):
    """Votes for the option whose type is ``prefer_type[mention]`` (else "A"); self-checks
    agree; discovery finds nothing."""

    def script(stage, schema, messages):
        if stage == "discovery":
            return {"links": []}
        if stage == "selfcheck":
            return {
                n: {"context_type": "none", "verdict": "consistent"} for n in schema.model_fields
            }
        out = {}
        for line in messages[1].content.splitlines():
            for name in schema.model_fields:
                field = name.split("e", 1)[-1].lstrip("0123456789")  # joint panel: "e2c0"
                if line.startswith(f"- {field} "):
                    mention = line.split('"')[1]
                    options = line.split(":", 1)[1] + " "  # the last option ends the line
                    want = prefer_type.get(mention)
                    letter = "A"
                    if want:
                        letter = options.split(f") {want} ")[0][-1]
                    out[name] = letter
        return out

    return script


def test_confident_candidates_go_to_one_expert(scripted, doc_and_cands) -> None:
    """Panel-size rule: the first expert votes on every candidate, the others only on the ones
    the tagger is unsure of; with every candidate sure, one call."""
    doc, cands = doc_and_cands
    cands[0].options = [Option("politician", 0.95), Option("person", 0.04), Option("none", 0.01)]
    task = scripted(_script({}), solo_confidence=0.9, panel_confidence=None, panel_call="separate")
    reason(task, doc, cands)
    first, *others = _vote_prompts(task)
    assert '- c0 "Angela Merkel"' in first and '- c1 "CDU"' in first
    assert len(others) == 2
    assert all('- c0 "' not in p and '- c1 "CDU"' in p for p in others)
    joint = scripted(_script({}), solo_confidence=0.9, panel_confidence=None)
    reason(joint, doc, cands)
    first, *others = _vote_prompts(joint)  # the first expert alone (its candidates differ)
    assert '- c0 "Angela Merkel"' in first and len(others) == 1  # the other two in one call
    assert '- c0 "' not in others[0] and "- e2: " in others[0] and "- e3: " in others[0]

    sure = scripted(_script({}), solo_confidence=0.5, panel_confidence=None)  # CDU's top: 0.5
    reason(sure, doc, cands)
    assert len(_vote_prompts(sure)) == 1
    everyone = scripted(
        _script({}), solo_confidence=None, panel_confidence=None, panel_call="separate"
    )
    reason(everyone, doc, cands)
    assert len(_vote_prompts(everyone)) == 3
    assert all('- c0 "' in p for p in _vote_prompts(everyone))


def test_the_panel_joins_only_where_the_first_ballot_is_unsure(scripted, doc_and_cands) -> None:
    """Panel-confidence rule: the first expert votes alone first; the others are asked about
    the candidates whose first ballot values no option at least ``panel_confidence``."""
    doc, cands = doc_and_cands
    personas = ReasoningConfig().personas
    # The first expert confirms the tagger on both (Merkel: politician, CDU: none); one-hot
    # answers weighed by the tagger give each ballot about 0.98 for that option.
    confirm = _script({"CDU": "none"})
    sure = scripted(confirm, solo_confidence=None, panel_confidence=0.9)
    reason(sure, doc, cands)
    (only,) = _vote_prompts(sure)
    assert only.rstrip().endswith(f"Vote as {personas[0]}.")
    unsure = scripted(confirm, solo_confidence=None, panel_confidence=0.999, panel_call="separate")
    reason(unsure, doc, cands)
    first, *rest = _vote_prompts(unsure)
    assert first.rstrip().endswith(f"Vote as {personas[0]}.") and len(rest) == 2
    assert [p.rstrip().rsplit("Vote as ", 1)[1] for p in rest] == [f"{x}." for x in personas[1:3]]
    # The first expert proposes a change for CDU (the tagger said O): the panel (one joint call,
    # the default) is asked about CDU alone, however sure that ballot is.
    change = scripted(_script({"CDU": "politicalparty"}), solo_confidence=None)
    reason(change, doc, cands)
    first, *rest = _vote_prompts(change)
    assert '- c0 "' in first and len(rest) == 1
    assert '- c1 "CDU"' in rest[0] and '- c0 "' not in rest[0]
    assert [ln for ln in rest[0].splitlines() if ln.startswith("- e")] == [
        f"- e2: {personas[1]}",
        f"- e3: {personas[2]}",
    ]


def test_a_ballot_is_the_tagger_prior_times_the_calibrated_llm(doc_and_cands) -> None:
    """``weigh``: p ~ p_tagger * p_llm / p_prior, floored and renormalised; neither rule leaves
    the LLM's distribution as it is."""
    _, cands = doc_and_cands
    cand = cands[0]  # politician, person, none
    tagger = [o.prob for o in cand.options]
    llm = {"A": 0.05, "B": 0.05, "C": 0.9}
    as_is = dict(zip(cand.option_types, llm.values(), strict=True))
    assert weigh(cand, llm, None, False, 0.02) == as_is
    # An LLM that says what it says without the sentence: the tagger decides.
    same = weigh(cand, llm, llm, True, 0.02)
    total = sum(tagger)
    for t, p in zip(cand.option_types, tagger, strict=True):
        assert same[t] == pytest.approx(p / total)
    # A letter bias removed: equal evidence relative to the prior keeps the tagger's order.
    biased = weigh(cand, {"A": 0.1, "B": 0.0, "C": 0.9}, None, True, 0.02)
    want = [max(p, 0.02) * w for p, w in zip(tagger, (0.1, 0.02, 0.9), strict=True)]
    assert [biased[t] for t in cand.option_types] == pytest.approx([w / sum(want) for w in want])
    assert sum(biased.values()) == pytest.approx(1.0)


def test_discovery_only_where_the_tagger_is_unsure(scripted, doc_and_cands) -> None:
    doc, cands = doc_and_cands
    unsure = scripted(_script({}), discovery_when="unsure", discovery_confidence=0.9)
    reason(unsure, doc, cands)  # both candidates are below 0.9
    assert [s for s, _ in unsure.backend.requests].count("discovery") == 1
    sure = scripted(_script({}), discovery_when="unsure", discovery_confidence=0.5)
    out = reason(sure, doc, cands)
    assert [s for s, _ in sure.backend.requests].count("discovery") == 0
    assert out.fallbacks == 0 and out.trace["links"] == []
    always = scripted(_script({}), discovery_when="always", discovery_confidence=0.5)
    reason(always, doc, cands)
    assert [s for s, _ in always.backend.requests].count("discovery") == 1


def test_selfcheck_only_where_the_vote_changed_the_tagger(scripted, doc_and_cands) -> None:
    doc, cands = doc_and_cands
    agree = scripted(_script({"CDU": "none"}))  # Merkel: "A" = politician = the tagger's type
    reason(agree, doc, cands)
    assert [s for s, _ in agree.backend.requests].count("selfcheck") == 0

    changed = scripted(_script({"CDU": "politicalparty"}))  # the tagger said O
    out = reason(changed, doc, cands)
    (check,) = [m[1].content for s, m in changed.backend.requests if s == "selfcheck"]
    assert "c1:" in check and "c0:" not in check
    assert "selfcheck" in out.entities[1].explanation
    assert "selfcheck" not in out.entities[0].explanation

    always = scripted(_script({"CDU": "none"}), selfcheck_when="always")
    reason(always, doc, cands)
    (check,) = [m[1].content for s, m in always.backend.requests if s == "selfcheck"]
    assert "c0:" in check and "c1:" in check


def test_reasons_only_when_explained(doc_and_cands) -> None:
    """``reasoning.reasons``: the schema the backend gets carries reason fields only when the
    output is explained (or reasons are "always"), and never with "never"."""
    _, cands = doc_and_cands

    def fields(reasons: str, explain: bool, vote: str = "choice") -> set[str]:
        cfg = CdlmConfig(reasoning=ReasoningConfig(reasons=reasons, vote=vote))
        task = make_task(cfg, "politics", POLITICS, backend=object(), explain=explain)
        schema = vote_schema(task, cands)
        names = set(schema.model_fields)
        for field in schema.model_fields.values():
            names |= set(getattr(field.annotation, "model_fields", {}))
        return names

    assert fields("explain", False) == {"c0", "c1"}
    assert fields("explain", True) == {"c0", "c1", "r0", "r1"}
    assert fields("always", False) == {"c0", "c1", "r0", "r1"}
    assert fields("never", True) == {"c0", "c1"}
    assert "reason" not in fields("explain", False, "scores")
    assert "reason" in fields("explain", True, "scores")


def test_the_gpt_request_schema_has_no_reason_fields_unless_explained(doc_and_cands) -> None:
    doc, cands = doc_and_cands

    def sent_properties(explain: bool) -> dict[str, set[str]]:
        with running(Step(content=schema_answer)) as server:
            cfg = CdlmConfig(
                llm=LLMConfig(backend="gpt", base_url=server.base_url),
                reasoning=ReasoningConfig(selfcheck_when="always"),
            )
            task = make_task(cfg, "politics", POLITICS, explain=explain)
            reason(task, doc, cands)
            out: dict[str, set[str]] = {}
            for body in server.requests:
                schema = body["response_format"]["schema"]
                names = set(schema["properties"])
                for sub in schema.get("$defs", {}).values():
                    names |= set(sub.get("properties", {}))
                out.setdefault(schema["title"], set()).update(names)
            return out

    plain, explained = sent_properties(False), sent_properties(True)
    assert not any(n.startswith("r") or n == "reason" for n in plain["Choices"])
    assert {"r0", "r1"} <= explained["Choices"]
    assert "reason" not in plain["SelfCheck"] and "reason" in explained["SelfCheck"]


def test_outputs_do_not_depend_on_concurrency() -> None:
    """Routed sentences and experts go out together up to llm.concurrency; with 4 the server
    sees requests overlap (never more than 4), with 1 never -- and the outcomes, their order and
    the requests made are the same."""
    batch = [
        (doc, cands, cands)
        for doc, cands in (
            sentence(first, last)
            for first, last in [
                ("Angela", "Merkel"), ("Helmut", "Kohl"), ("Olaf", "Scholz"),
                ("Willy", "Brandt"), ("Konrad", "Adenauer"), ("Gerhard", "Schroeder"),
            ]
        )
    ]  # fmt: skip

    def run(concurrency: int) -> tuple[list, int, list[str]]:
        with running(Step(content=schema_answer, delay=0.05)) as server:
            cfg = LLMConfig(backend="gpt", base_url=server.base_url, concurrency=concurrency)
            # a round's experts go out together, one request each
            rcfg = ReasoningConfig(panel_confidence=None, panel_call="separate")
            task = Task(GptBackend(cfg), load_prompts(), rcfg, "politics", POLITICS, UsageLog())
            outcomes = [
                (
                    [(e.start, e.end, e.label, round(e.score, 6), e.source) for e in o.entities],
                    [(c.id, before, after) for c, before, after in o.changes],
                    o.fallbacks,
                    o.trace,
                )
                for o in route_many(task, batch)
            ]
            sent = sorted(Message(**m).content for b in server.requests for m in b["messages"])
            return outcomes, server.max_in_flight, sent

    serial, one_at_a_time, sent_serial = run(1)
    parallel, most_at_once, sent_parallel = run(4)
    assert parallel == serial
    assert sent_parallel == sent_serial and len(sent_serial) > 6 * 2 * 3
    assert one_at_a_time == 1 and 1 < most_at_once <= 4
    assert any(changes for _, changes, _, _ in serial)  # the answers do change decisions
