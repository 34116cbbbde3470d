"""``cdlm prompts check``: render every template with sample data and report problems.

The sample variables are built by the same functions the stages use, so a template that passes
here gets exactly these names at run time. Reported, each with ``file:line``:
- syntax errors;
- unknown variables (read by the template, not provided by the stage);
- missing required variables (a stage's key inputs, e.g. ``sentence``, that the template never
  uses — the prompt would silently lack them);
- render errors under ``StrictUndefined`` (e.g. ``{{ c.nmae }}``), for every branch the sample
  data exercises (LLM-only and tagger discovery, voting rounds 1 and 2, both self-check modes);
- label files that are not ``[types] name = "description"`` TOML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from cdlm.config import ReasoningConfig
from cdlm.errors import TemplateError
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.candidates import Candidate, Doc, Option
from cdlm.reasoning.discovery import Link, discovery_variables
from cdlm.reasoning.selfcheck import selfcheck_variables
from cdlm.reasoning.stage import Task
from cdlm.reasoning.templates import STAGES, PromptSet, load_label_file, variable_line
from cdlm.reasoning.voting import Ballot, vote_variables

REQUIRED = {
    "discovery": {"sentence", "types"},
    "vote": {"sentence", "candidates", "persona"},
    "selfcheck": {"sentence", "checks"},
}


def _sample_task(prompts: PromptSet) -> tuple[Task, Doc, list[Candidate]]:
    doc = Doc.from_tokens(["Angela", "Merkel", "led", "the", "CDU", "in", "Berlin", "."])
    cands = [
        Candidate(
            0,
            0,
            2,
            "Angela Merkel",
            0,
            13,
            [Option("politician", 0.55), Option("person", 0.3), Option("none", 0.05)],
            "span",
            "politician",
            0.55,
            0.25,
        ),
        Candidate(
            1,
            4,
            5,
            "CDU",
            22,
            25,
            [Option("politicalparty", 0.4), Option("organisation", 0.35), Option("none", 0.25)],
            "missed",
            None,
            0.25,
            -0.15,
        ),
    ]
    task = Task(
        None,
        prompts,
        ReasoningConfig(),
        "politics",  # type: ignore[arg-type]
        ["politician", "person", "politicalparty", "organisation"],
        UsageLog(),
    )
    return task, doc, cands


def sample_variables(prompts: PromptSet) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, case, variables) for every case the check renders."""
    task, doc, cands = _sample_task(prompts)
    links = [Link("Chancellor", "Angela Merkel", "politician", (0, 1), (0, 13))]
    ballot = Ballot(1, 1, {"politician": 4.0, "person": 3.0, "none": 1.0}, "she led a party")
    voted = {0: "politician", 1: "politicalparty"}
    cases = [
        ("discovery", "tagger candidates", discovery_variables(task, doc, cands)),
        ("discovery", "LLM-only", discovery_variables(task, doc, None)),
        ("vote", "round 1", vote_variables(task, doc, "a linguist", 1, cands, links, [])),
        (
            "vote",
            "round 2",
            vote_variables(task, doc, "a linguist", 2, cands, links, [(cands[0], [ballot])]),
        ),
    ]
    for mode in ("placeholder", "runner_up"):
        task.config = ReasoningConfig(selfcheck=mode)
        cases.append(("selfcheck", mode, selfcheck_variables(task, doc, cands, voted)))
    return cases


def check_prompts(directory: Path) -> list[str]:
    """Problems found in a prompts folder, one ``file:line: message`` per problem."""
    from cdlm.reasoning.templates import _environment

    if not directory.is_dir():
        return [f"{directory}: prompts folder not found"]
    prompts = PromptSet(directory, _environment(directory))
    problems: list[str] = []
    broken: set[str] = set()
    for stage in STAGES:
        path = prompts.path(stage)
        if not path.is_file():
            problems.append(f"{path}: template not found")
            broken.add(stage)
            continue
        try:
            source, used = prompts.undeclared(stage)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: syntax error: {exc.message}")
            broken.add(stage)
            continue
        provided = set().union(*(v.keys() for s, _, v in sample_variables(prompts) if s == stage))
        for name in sorted(used - provided):
            problems.append(
                f"{path}:{variable_line(source, name)}: unknown variable '{name}' "
                f"(available: {', '.join(sorted(provided))})"
            )
            broken.add(stage)
        for name in sorted(REQUIRED[stage] - used):
            problems.append(f"{path}:1: required variable '{name}' is never used")
    seen: set[str] = set()
    for stage, case, variables in sample_variables(prompts):
        if stage in broken:
            continue
        try:
            prompts.render(stage, variables)
        except TemplateError as exc:
            if str(exc) not in seen:
                seen.add(str(exc))
                problems.append(f"{exc} (rendering the {case} case)")
    labels = directory / "labels"
    for path in sorted(labels.glob("*.toml")) if labels.is_dir() else []:
        try:
            if not load_label_file(path):
                problems.append(f"{path}:1: no [types] descriptions")
        except TemplateError as exc:
            problems.append(str(exc))
    return problems
