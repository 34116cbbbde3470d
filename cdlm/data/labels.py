"""Label descriptions: ``{type: description}`` per domain, the one reader of the label files.

A label file is TOML, ``domain = "human name"`` and ``[types] name = "description"``. The
package ships one per known domain in ``cdlm/prompts/labels/<domain>.toml`` (package data, read
with :mod:`importlib.resources`); a user passes their own file instead. Two floors read them:
tagger training starts the head rows from the descriptions (``tagger.label_init``) and the
LLM stages print them in their prompts. Both go through this module, so a file means the same to
both; it sits in the data floor because it is data about a domain, and imports nothing above.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path
from typing import Any

from cdlm.errors import TemplateError


def default_labels_dir() -> Path:
    """The label files shipped with the package (``cdlm/prompts/labels/``)."""
    return Path(str(importlib.resources.files("cdlm").joinpath("prompts", "labels")))


def label_file(domain_or_file: str | Path) -> Path:
    """The file a domain's descriptions come from: a :class:`~pathlib.Path` or a name ending in
    ``.toml`` is that file; anything else is a domain key (``politics``), whose file ships with
    the package."""
    if isinstance(domain_or_file, Path) or str(domain_or_file).endswith(".toml"):
        return Path(domain_or_file)
    return default_labels_dir() / f"{domain_or_file}.toml"


def read_label_toml(path: Path) -> dict[str, Any]:
    """The parsed file; malformed TOML is a one-line error naming the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path}: not valid TOML: {exc}") from None


def load_label_descriptions(domain_or_file: str | Path) -> dict[str, str]:
    """``{type: description}`` from a domain's label file (see :func:`label_file`), in file
    order; a missing file means no descriptions (``{}``), a ``[types]`` table that is not
    names to strings is an error."""
    path = label_file(domain_or_file)
    if not path.is_file():
        return {}
    types = read_label_toml(path).get("types", {})
    if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
        raise TemplateError(f"{path}: [types] must map each type name to a description string")
    return dict(types)


def label_domain_name(domain_or_file: str | Path) -> str | None:
    """The human name a label file gives its domain (``domain = "..."``), None without one."""
    path = label_file(domain_or_file)
    if not path.is_file():
        return None
    name = read_label_toml(path).get("domain")
    return name if isinstance(name, str) else None
