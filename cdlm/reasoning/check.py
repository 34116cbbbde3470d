"""``cdlm prompts check``: render every template with sample data and report problems.

Every stage in the registry (:mod:`cdlm.reasoning.stages`) is checked with its own sample
variables, built by the same functions the stage uses, so a template that passes here gets exactly
these names at run time. Reported, each with ``file:line``:
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
from cdlm.reasoning.stage import Task
from cdlm.reasoning.stages import registry
from cdlm.reasoning.templates import PromptSet, environment, load_label_file, variable_line


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
    """(stage, case, variables) for every case the check renders, from each registered stage."""
    task, doc, cands = _sample_task(prompts)
    return [
        (name, case, variables)
        for name, stage in registry.items()
        for case, variables in stage.samples(task, doc, cands)
    ]


def check_prompts(directory: Path) -> list[str]:
    """Problems found in a prompts folder, one ``file:line: message`` per problem."""
    if not directory.is_dir():
        return [f"{directory}: prompts folder not found"]
    prompts = PromptSet(directory, environment(directory))
    problems: list[str] = []
    broken: set[str] = set()
    samples = sample_variables(prompts)
    for stage in registry.values():
        path = prompts.path(stage.template)
        if not path.is_file():
            problems.append(f"{path}: template not found")
            broken.add(stage.name)
            continue
        try:
            source, used = prompts.undeclared(stage.template)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: syntax error: {exc.message}")
            broken.add(stage.name)
            continue
        provided = set().union(*(v.keys() for s, _, v in samples if s == stage.name))
        for name in sorted(used - provided):
            problems.append(
                f"{path}:{variable_line(source, name)}: unknown variable '{name}' "
                f"(available: {', '.join(sorted(provided))})"
            )
            broken.add(stage.name)
        for name in sorted(stage.required - used):
            problems.append(f"{path}:1: required variable '{name}' is never used")
    seen: set[str] = set()
    for name, case, variables in samples:
        if name in broken:
            continue
        try:
            prompts.render(registry[name].template, variables)
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
