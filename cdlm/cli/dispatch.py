"""How a command line finds its command (for the command modules of :mod:`cdlm.cli`).

- :func:`plain_group`: a command group with a plain form of its own. ``cdlm eval --checkpoint
  X`` runs the plain command (one model on a dataset), ``cdlm eval suite FILE`` a subcommand.
  The first word decides: a subcommand's name picks it, anything else (an option, a text, no
  word at all) goes to the plain command. So a text that is literally a subcommand's name goes
  after ``--``: ``cdlm predict -- corpus`` tags the word "corpus".
- Old spellings keep working, each with one ``note:`` line on stderr: a whole old form
  rewritten to its new command (a group's ``legacy`` function), or an old option that only set
  one config key read as ``--set KEY=VALUE`` (an :class:`Alias`, not shown in the help).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import typer
from typer.core import TyperCommand, TyperGroup

from cdlm.errors import ConfigError

Legacy = Callable[[list[str]], list[str]]  # old words -> new words (notes what it rewrote)

_PLAIN_ARGS = "_cdlm_plain_args"  # on a group's context: the words for its plain command


class Alias(NamedTuple):
    """An old option that set one config key; it now reads as ``--set KEY=VALUE``."""

    key: str
    value: str | None = None  # a flag's fixed value (JSON); None: the option takes a value
    text: bool = False  # the value is a string, never read as JSON (a name, a path)


def deprecated(old: str, new: str) -> None:
    """The one line an old spelling prints on stderr before it runs as the new one."""
    print(f"note: {old} is deprecated; use {new}", file=sys.stderr)


def option_words(args: list[str]) -> list[str]:
    """The words before a ``--`` (after it everything is a text or a file name)."""
    return args[: args.index("--")] if "--" in args else args


def take_option(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of option ``name`` (``--name V`` or ``--name=V``) before any ``--``, and
    ``args`` without it; ``(None, args)`` when it is not there."""
    for i, arg in enumerate(option_words(args)):
        if arg == name:
            if i + 1 == len(args):
                raise ConfigError(f"{name}: needs a value")
            return args[i + 1], args[:i] + args[i + 2 :]
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2], args[:i] + args[i + 1 :]
    return None, args


def _setting(alias: Alias, name: str, raw: str | None) -> str:
    if alias.value is not None:
        return f"{alias.key}={alias.value}"
    if raw is None:
        raise ConfigError(f"{name}: needs a value")
    if alias.text:
        try:
            json.loads(raw)
        except json.JSONDecodeError:
            pass  # read as a string anyway
        else:
            raw = json.dumps(raw)  # "123" stays the string "123"
    return f"{alias.key}={raw}"


def rewrite_aliases(args: list[str], aliases: Mapping[str, Alias]) -> list[str]:
    """``args`` with each old option of ``aliases`` (before a ``--``) as ``--set KEY=VALUE``,
    noted once per use."""
    out: list[str] = []
    words: Iterator[str] = iter(args)
    for arg in words:
        if arg == "--":
            return [*out, arg, *words]
        name, eq, attached = arg.partition("=")
        alias = aliases.get(name)
        if alias is None or (eq and alias.value is not None):
            out.append(arg)  # not an alias (or a flag given a value: the parser says so)
            continue
        setting = _setting(alias, name, attached if eq else next(words, None))
        deprecated(name, f"--set {setting}")
        out += ["--set", setting]
    return out


class AliasedCommand(TyperCommand):
    """A command that still reads its old options (:class:`Alias`) as ``--set``."""

    aliases: Mapping[str, Alias] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_aliases(list(args), self.aliases))


def aliased(aliases: Mapping[str, Alias]) -> type[TyperCommand]:
    """The command class for ``app.command(cls=...)`` of a command with these old options."""
    return type("AliasedCommand", (AliasedCommand,), {"aliases": dict(aliases)})


class PlainGroup(TyperGroup):
    """A group whose first word picks a subcommand, else its plain command (module docstring).
    :func:`plain_group` makes one for a given plain command."""

    plain: TyperCommand  # the plain command, set by plain_group
    legacy: Legacy | None = None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        args = list(args)
        if self.legacy is not None and not (args and args[0] in self.commands):
            args = self.legacy(args)
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        setattr(ctx, _PLAIN_ARGS, args)
        return []

    def invoke(self, ctx: Any) -> Any:
        args = getattr(ctx, _PLAIN_ARGS, None)
        if args is None:
            return super().invoke(ctx)
        # The plain command stands in for the group: `cdlm eval [OPTIONS]` in its usage line.
        plain = self.plain.make_context(ctx.info_name, args, parent=ctx.parent)
        with plain:
            return plain.command.invoke(plain)


def plain_group(
    command: Callable[..., Any],
    *,
    legacy: Legacy | None = None,
    aliases: Mapping[str, Alias] | None = None,
    epilog: str | None = None,
) -> type[TyperGroup]:
    """The group class (``typer.Typer(cls=...)``) whose plain form runs ``command``; ``epilog``
    ends its help (say there which subcommands there are)."""
    single = typer.Typer(add_completion=False)
    single.command(cls=aliased(aliases or {}), epilog=epilog)(command)
    plain = typer.main.get_command(single)
    extra = {"plain": plain, "legacy": staticmethod(legacy) if legacy else None}
    return type("PlainGroup", (PlainGroup,), extra)
