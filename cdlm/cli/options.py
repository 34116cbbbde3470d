"""Options shared by several commands, so they are spelt the same everywhere.

Every command that writes something takes ``--output/-o``. The names used before
(``--out``, ``--dest``, ``--results-dir``) still work as hidden aliases, so old scripts keep
running; :func:`pick_output` merges the two and refuses both at once.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import typer

from cdlm.errors import ConfigError

T = TypeVar("T")

LLMChoice = Literal["none", "llama", "gpt"]
SplitChoice = Literal["train", "dev", "test"]


def output_option(help: str) -> Any:
    """``--output/-o``: where the command writes."""
    return typer.Option("--output", "-o", help=help)


def old_output_option(name: str) -> Any:
    """A hidden alias of ``--output`` (its old name in this command)."""
    return typer.Option(name, hidden=True, help="Old name of --output.")


def pick_output(output: T | None, old: T | None, old_name: str) -> T | None:
    """``--output`` or its old name; both at once is an error."""
    if output is not None and old is not None:
        raise ConfigError(f"give --output or {old_name}, not both")
    return output if output is not None else old
