"""Prompt templates: one Jinja file per LLM stage, rendered in a sandbox.

Users edit ``prompts/*.jinja`` in place or point ``--prompts-dir`` at a copy. Each template defines
two blocks, ``system`` and ``user``, which become the two chat messages. Choices:

- ``SandboxedEnvironment``: a template cannot reach Python internals (attributes starting with
  ``_``, unsafe callables), so a prompt file from elsewhere cannot run code.
- ``StrictUndefined``: a misspelt variable is an error naming ``file:line``, never an empty string
  that silently weakens the prompt.
- No autoescape (prompts are not HTML); ``trim_blocks``/``lstrip_blocks`` so ``{% for %}`` lines do
  not leave blank lines that cost tokens.
- Label descriptions live in ``prompts/labels/<domain>.toml`` (``[types] name = "description"``);
  a type without a description is shown by name only.

The rendered text is part of the LLM cache key (the backend hashes the messages), so an edit to a
template takes effect on the next run.
"""

from __future__ import annotations

import re
import tomllib
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from cdlm.errors import TemplateError
from cdlm.llm.base import Message

BLOCKS = ("system", "user")


def default_prompts_dir() -> Path:
    """The repository's ``prompts/`` folder (the package is installed editable)."""
    return Path(__file__).resolve().parents[2] / "prompts"


def environment(directory: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def template_error_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line where a render error happened: the innermost traceback frame of the
    compiled template, mapped back through Jinja's debug info."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == template.filename and frame.lineno is not None:
            line = template.get_corresponding_lineno(frame.lineno)
    return line


def variable_line(source: str, name: str) -> int:
    """First line of ``source`` that uses variable ``name`` inside a Jinja tag (1 if none)."""
    pattern = re.compile(r"(\{\{|\{%)[^}]*\b" + re.escape(name) + r"\b")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1


@dataclass
class PromptSet:
    """The templates and label descriptions of one prompts folder."""

    directory: Path
    env: SandboxedEnvironment = field(repr=False)

    def path(self, template: str) -> Path:
        return self.directory / template

    def render(self, template: str, variables: dict[str, Any]) -> list[Message]:
        """Render a template's ``system`` and ``user`` blocks into chat messages."""
        path = self.path(template)
        try:
            template = self.env.get_template(path.name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"{path}: template not found (expected one per stage)") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{path}:{exc.lineno}: {exc.message}") from None
        missing = [b for b in BLOCKS if b not in template.blocks]
        if missing:
            raise TemplateError(f"{path}:1: missing block(s) {missing} (need system and user)")
        try:
            context = template.new_context(dict(variables))
            parts = {b: "".join(template.blocks[b](context)).strip() for b in BLOCKS}
        except jinja2.TemplateError as exc:
            line = template_error_line(exc, template)
            raise TemplateError(f"{path}:{line or 1}: {exc}") from None
        return [
            Message(role="system", content=parts["system"]),
            Message(role="user", content=parts["user"]),
        ]

    def labels(self, domain: str | None, types: list[str]) -> list[dict[str, str]]:
        """``[{name, description}]`` for ``types`` (in order), from ``labels/<domain>.toml``."""
        descriptions: dict[str, str] = {}
        if domain:
            descriptions = load_label_file(self.directory / "labels" / f"{domain}.toml")
        return [{"name": t, "description": descriptions.get(t, "")} for t in types]

    def domain_name(self, domain: str | None) -> str:
        """The human name of the domain (``domain = "..."`` in the label file), else its key."""
        if not domain:
            return "general"
        path = self.directory / "labels" / f"{domain}.toml"
        if path.is_file():
            data = _read_toml(path)
            if isinstance(data.get("domain"), str):
                return data["domain"]
        return domain

    def undeclared(self, template: str) -> tuple[str, set[str]]:
        """The template source and the variables it reads from its context."""
        path = self.path(template)
        source = path.read_text(encoding="utf-8")
        return source, meta.find_undeclared_variables(self.env.parse(source))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML: {exc}") from None


def load_label_file(path: Path) -> dict[str, str]:
    """``{type: description}`` from a label file; a missing file means no descriptions."""
    if not path.is_file():
        return {}
    data = _read_toml(path)
    types = data.get("types", {})
    if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
        raise TemplateError(f"{path}: [types] must map each type name to a description string")
    return dict(types)


def open_prompts(directory: Path | str | None, templates: Iterable[str]) -> PromptSet:
    """Open a prompts folder (``None`` = the repository's ``prompts/``); each of ``templates``
    must exist and parse, so a broken edit is reported before any LLM call. The stage registry
    (:func:`cdlm.reasoning.stages.load_prompts`) names the templates."""
    folder = Path(directory) if directory is not None else default_prompts_dir()
    if not folder.is_dir():
        raise TemplateError(f"{folder}: prompts folder not found")
    prompts = PromptSet(folder, environment(folder))
    names = list(templates)
    for name in names:
        path = prompts.path(name)
        if not path.is_file():
            raise TemplateError(f"{path}: template not found (one per stage: {', '.join(names)})")
        try:
            prompts.env.parse(path.read_text(encoding="utf-8"), path.name, str(path))
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{path}:{exc.lineno}: {exc.message}") from None
    return prompts
