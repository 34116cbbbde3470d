"""Prompt templates: one Jinja file per LLM stage, rendered in a sandbox.

The defaults ship inside the package (``cdlm/prompts/``, package data read with
:mod:`importlib.resources`); users copy them out with ``cdlm prompts export DIR``, edit, and point
``--set reasoning.prompts_dir=DIR`` at the copy. Each template defines two blocks, ``system``
and ``user``, which become the system and the last user message; a template may also set
``examples``, a list of ``[user, assistant]`` pairs sent as earlier chat turns between the two
(few-shot). Choices:

- ``SandboxedEnvironment``: a template cannot reach Python internals (attributes starting with
  ``_``, unsafe callables), so a prompt file from elsewhere cannot run code.
- ``StrictUndefined``: a misspelt variable is an error naming ``file:line``, never an empty string
  that silently weakens the prompt.
- No autoescape (prompts are not HTML); ``trim_blocks``/``lstrip_blocks`` so ``{% for %}`` lines do
  not leave blank lines that cost tokens.
- Every printed value goes through :func:`safe_text` (the environment's ``finalize``): input
  text can never close the ``\"\"\"`` quote around it or hold a chat-control string such as
  ``<|im_end|>``, whatever the template does with it.
- Label descriptions live in ``labels/<domain>.toml`` of the prompts folder (``[types] name =
  "description"``), or in the file given with ``--labels FILE.toml``. A domain without a label
  file gets a stub: its types by name, with empty descriptions.

The rendered text is part of the LLM cache key (the backend hashes the messages), so an edit to a
template takes effect on the next run.
"""

from __future__ import annotations

import importlib.resources
import re
import shutil
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment

from cdlm.data.labels import label_domain_name, load_label_descriptions
from cdlm.errors import TemplateError
from cdlm.llm.base import Message, inert

BLOCKS = ("system", "user")
_OPENS_TRIPLE = re.compile(r'"(?="")')  # a quote that starts a run of three or more


def default_prompts_dir() -> Path:
    """The prompts shipped with the package (``cdlm/prompts/``, package data)."""
    return Path(str(importlib.resources.files("cdlm").joinpath("prompts")))


def export_prompts(dest: Path, *, force: bool = False) -> list[Path]:
    """Copy the default templates and label files into ``dest`` for editing; an existing file
    is an error unless ``force``. Returns the files written."""
    source = default_prompts_dir()
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in (".jinja", ".toml"))
    targets = [dest / p.relative_to(source) for p in files]
    clash = [t for t in targets if t.exists()]
    if clash and not force:
        raise TemplateError(f"{clash[0]}: exists already (pass --force to overwrite the defaults)")
    for src, dst in zip(files, targets, strict=True):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return targets


def safe_text(value: Any) -> Any:
    """What every ``{{ ... }}`` of a template prints (the environment's ``finalize``, so no
    template can forget it): a text never holds ``\"\"\"`` (a quote that starts a run of
    three gets a space after it), so it cannot close the quote around it, nor a chat-control
    string (:func:`cdlm.llm.base.inert`), so it cannot fake a turn. Other values as they are."""
    if not isinstance(value, str):
        return value
    return _OPENS_TRIPLE.sub('" ', inert(value))


def environment(directory: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=safe_text,
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
    labels_file: Path | None = None  # --labels FILE.toml: replaces labels/<domain>.toml

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
            examples = getattr(template.make_module(dict(variables)), "examples", [])
        except jinja2.TemplateError as exc:
            line = template_error_line(exc, template)
            raise TemplateError(f"{path}:{line or 1}: {exc}") from None
        return [
            Message(role="system", content=parts["system"]),
            *_turns(examples, path),
            Message(role="user", content=parts["user"]),
        ]

    def label_path(self, domain: str) -> Path:
        """Where the descriptions of ``domain`` come from: ``--labels`` or labels/<domain>.toml."""
        return self.labels_file or self.directory / "labels" / f"{domain}.toml"

    def labels(self, domain: str | None, types: list[str]) -> list[dict[str, str]]:
        """``[{name, description}]`` for ``types`` (in order), from the domain's label file; a
        type it does not describe (or a domain without one: the stub) has an empty description."""
        descriptions: dict[str, str] = {}
        if domain or self.labels_file:
            descriptions = load_label_file(self.label_path(domain or ""))
        return [{"name": t, "description": descriptions.get(t, "")} for t in types]

    def domain_name(self, domain: str | None) -> str:
        """The human name of the domain (``domain = "..."`` in the label file), else its key."""
        if not domain and not self.labels_file:
            return "general"
        name = label_domain_name(self.label_path(domain or ""))
        return name if name is not None else domain or "general"

    def undeclared(self, template: str) -> tuple[str, set[str]]:
        """The template source and the variables it reads from its context."""
        path = self.path(template)
        source = path.read_text(encoding="utf-8")
        return source, meta.find_undeclared_variables(self.env.parse(source))


def _turns(examples: Any, path: Path) -> list[Message]:
    """A template's few-shot ``examples`` (``[[user, assistant], ...]``) as chat turns."""
    pairs = list(examples) if isinstance(examples, list | tuple) else None
    if pairs is None or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in pairs
    ):
        raise TemplateError(f"{path}:1: 'examples' must be a list of [user, assistant] strings")
    return [
        Message(role=role, content=text)
        for user, assistant in pairs
        for role, text in (("user", user), ("assistant", assistant))
    ]


def load_label_file(path: Path) -> dict[str, str]:
    """``{type: description}`` from a label file; a missing file means no descriptions. The
    data floor's reader (:func:`cdlm.data.labels.load_label_descriptions`), so tagger training
    and the prompts read a file alike."""
    return load_label_descriptions(Path(path))


def open_prompts(
    directory: Path | str | None, templates: Iterable[str], labels_file: Path | str | None = None
) -> PromptSet:
    """Open a prompts folder (``None`` = the defaults in the package); each of ``templates``
    must exist and parse, so a broken edit is reported before any LLM call. The stage registry
    (:func:`cdlm.reasoning.stages.load_prompts`) names the templates. ``labels_file`` (``--labels``)
    replaces the folder's ``labels/<domain>.toml`` and must exist."""
    folder = Path(directory) if directory is not None else default_prompts_dir()
    if not folder.is_dir():
        raise TemplateError(f"{folder}: prompts folder not found")
    labels = Path(labels_file) if labels_file is not None else None
    if labels is not None:
        if not labels.is_file():
            raise TemplateError(f"{labels}: label file not found (--labels FILE.toml)")
        load_label_file(labels)  # a malformed file is reported now, not at the first call
    prompts = PromptSet(folder, environment(folder), labels)
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
