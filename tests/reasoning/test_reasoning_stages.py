"""The stage registry: one list drives the prompts loader, ``cdlm prompts check``, the token
budgets and the task builder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdlm.config import CdlmConfig, LLMConfig, load_config
from cdlm.errors import ConfigError, TemplateError
from cdlm.reasoning.check import check_prompts
from cdlm.reasoning.discovery import DISCOVERY
from cdlm.reasoning.stage import Stage
from cdlm.reasoning.stages import check_budgets, load_prompts, make_task, register, registry
from cdlm.reasoning.templates import default_prompts_dir


def test_registry_holds_the_stages_in_pipeline_order() -> None:
    assert list(registry) == ["discovery", "vote", "vote_prior", "selfcheck", "augment_fill"]
    for name, stage in registry.items():
        assert stage.name == name
        assert (default_prompts_dir() / stage.template).is_file()
        assert stage.required  # every stage names the variables its template must use


def test_a_stage_name_registers_once() -> None:
    with pytest.raises(ValueError, match="discovery"):
        register(DISCOVERY)


def test_token_budget_comes_from_config_per_stage() -> None:
    llm = LLMConfig(max_tokens=100, stage_max_tokens={"vote": 300})
    assert registry["vote"].max_tokens(llm) == 300
    assert registry["discovery"].max_tokens(llm) == 100


def test_budget_for_an_unknown_stage_is_a_config_error() -> None:
    check_budgets(LLMConfig(stage_max_tokens={"vote": 10, "selfcheck": 20}))
    with pytest.raises(ConfigError, match=r"unknown stage\(s\) votes; stages: discovery, vote"):
        check_budgets(LLMConfig(stage_max_tokens={"votes": 10}))
    cfg = load_config(None, {"llm.backend": "llama", "llm.stage_max_tokens": {"votes": 10}})
    with pytest.raises(ConfigError, match="votes"):  # before any model is loaded
        make_task(cfg, "politics", ["person"])


def test_make_task_builds_from_config_with_a_given_backend(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), folder)
    cfg = load_config(None, {"reasoning.prompts_dir": str(folder), "reasoning.experts": 2})
    backend = object()
    task = make_task(cfg, "politics", ["person"], backend=backend)  # type: ignore[arg-type]
    assert task.backend is backend and task.prompts.directory == folder
    assert task.config.experts == 2 and task.types == ["person"] and task.domain == "politics"
    (folder / "vote.jinja").unlink()
    with pytest.raises(TemplateError, match=r"vote\.jinja: template not found"):
        make_task(cfg, "politics", ["person"], backend=backend)  # type: ignore[arg-type]


def test_a_registered_stage_is_loaded_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a stage to the registry is all it takes for the loader and the check to want
    its template, with its own sample variables and required names."""
    folder = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), folder)
    extra = Stage(
        name="extra",
        template="extra.jinja",
        schema=lambda: CdlmConfig,
        required=frozenset({"sentence"}),
        samples=lambda task, doc, cands: [("only case", {"sentence": doc.text, "n": 1})],
    )
    monkeypatch.setitem(registry, "extra", extra)
    with pytest.raises(TemplateError, match=r"extra\.jinja: template not found"):
        load_prompts(folder)
    assert check_prompts(folder) == [f"{folder / 'extra.jinja'}: template not found"]
    (folder / "extra.jinja").write_text(
        "{% block system %}s{% endblock %}{% block user %}{{ n }} {{ m }}{% endblock %}\n"
    )
    problems = check_prompts(folder)
    assert any("unknown variable 'm'" in p for p in problems)
    assert any("required variable 'sentence' is never used" in p for p in problems)
    (folder / "extra.jinja").write_text(
        "{% block system %}s{% endblock %}{% block user %}{{ sentence }}{% endblock %}\n"
    )
    assert check_prompts(folder) == []
    assert load_prompts(folder).render("extra.jinja", {"sentence": "x"})[1].content == "x"
