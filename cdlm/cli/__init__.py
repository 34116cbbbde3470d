"""The ``cdlm`` command. Each area registers its commands from its own module here; heavy
imports (torch, transformers, llama_cpp) happen inside the commands, so ``cdlm --help`` is fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cdlm.errors import CdlmError

app = typer.Typer(
    name="cdlm",
    help="Cross-domain NER: a causal, label-graph tagger plus an LLM for the hard cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command()
def version() -> None:
    """Print the cdlm version."""
    from cdlm import __version__

    print(__version__)


_registered: list[bool] = []  # main() may run more than once in a process (tests)


def _register() -> None:
    """Add every area's commands to ``app`` (once per process)."""
    if _registered:
        return
    _registered.append(True)
    from cdlm.cli import augment, data, graphs, llm, model, predict, probe, prompts, run, serve

    for module in (data, run, predict, serve, model, graphs, probe, llm, prompts, augment):
        module.register(app)


def _version(value: bool) -> None:
    if value:
        _print_version()
        raise typer.Exit()


def _print_version() -> None:
    from cdlm import __version__

    print(f"cdlm {__version__}")


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the cdlm version and exit (works after any command, too).",
        ),
    ] = False,
) -> None:
    """Cross-domain NER: a causal, label-graph tagger plus an LLM for the hard cases."""


def _asks_version(args: list[str]) -> bool:
    """``--version`` anywhere before a ``--`` (so ``cdlm predict --version`` answers too)."""
    return "--version" in (args[: args.index("--")] if "--" in args else args)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors, bad options included, become one line on stderr and
    exit code 2; no traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    if _asks_version(args):
        _print_version()
        raise SystemExit(0)
    _register()
    try:
        code = typer.main.get_command(app).main(args, prog_name="cdlm", standalone_mode=False)
    except CdlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:  # usage errors: unknown option, bad choice, ...
        message = exc.format_message()  # type: ignore[attr-defined]
        if type(exc).__name__ == "NoArgsIsHelpError":  # `cdlm` alone: the help
            print(message)
        else:
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
