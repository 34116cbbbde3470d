"""The registry of LLM stages, and the one place a reasoning :class:`Task` is built.

Each stage module describes itself with a :class:`~cdlm.reasoning.stage.Stage` (name, template,
output schema builder, required template variables, sample variables); ``registry`` holds them
by name, so the prompts loader, ``cdlm prompts check`` and the ``llm.stage_max_tokens`` check all
read one list instead of keeping their own. A new stage is one module plus one ``register`` call
here (explicit, so importing a module never changes what is registered).
"""

from __future__ import annotations

from pathlib import Path

from cdlm.config import CdlmConfig, LLMConfig
from cdlm.errors import ConfigError
from cdlm.llm.base import LLMBackend
from cdlm.llm.usage import UsageLog
from cdlm.reasoning.discovery import DISCOVERY
from cdlm.reasoning.fill import FILL
from cdlm.reasoning.selfcheck import SELFCHECK
from cdlm.reasoning.stage import Stage, Task
from cdlm.reasoning.templates import PromptSet, open_prompts
from cdlm.reasoning.voting import VOTE, VOTE_PRIOR

registry: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add ``stage`` to the registry; a second stage of the same name is an error."""
    if stage.name in registry:
        raise ValueError(f"stage '{stage.name}' is registered already")
    registry[stage.name] = stage
    return stage


for _stage in (DISCOVERY, VOTE, VOTE_PRIOR, SELFCHECK, FILL):  # pipeline order, then FactMix
    register(_stage)


def load_prompts(
    directory: Path | str | None = None, labels_file: Path | str | None = None
) -> PromptSet:
    """The prompts folder (``None`` = the defaults in the package) with every registered
    stage's template present and parsing; ``labels_file`` is ``--labels FILE.toml``."""
    return open_prompts(directory, [s.template for s in registry.values()], labels_file)


def check_budgets(llm: LLMConfig) -> None:
    """``llm.stage_max_tokens`` may only name registered stages (a misspelt key would
    silently leave that stage at ``llm.max_tokens``)."""
    unknown = sorted(set(llm.stage_max_tokens) - set(registry))
    if unknown:
        raise ConfigError(
            f"field 'llm.stage_max_tokens': unknown stage(s) {', '.join(unknown)}; "
            f"stages: {', '.join(registry)}"
        )


def make_task(
    cfg: CdlmConfig,
    domain: str | None,
    types: list[str],
    *,
    log: UsageLog | None = None,
    backend: LLMBackend | None = None,
    explain: bool = False,
) -> Task:
    """A reasoning task from a config: the prompts first (a broken template is reported before
    a model loads), then the configured backend (``backend`` replaces it, e.g. a shared one).

    Answers carry reasons when ``reasoning.reasons`` is ``"always"``, or ``"explain"`` and the
    output is ``explain``-ed (``--explain``)."""
    check_budgets(cfg.llm)
    prompts = load_prompts(cfg.reasoning.prompts_dir, cfg.reasoning.labels_file)
    if backend is None:
        from cdlm.llm.factory import make_backend

        backend = make_backend(cfg.llm)
    wanted = cfg.reasoning.reasons
    reasons = wanted == "always" or (wanted == "explain" and explain)
    return Task(backend, prompts, cfg.reasoning, domain, types, log or UsageLog(), reasons)
