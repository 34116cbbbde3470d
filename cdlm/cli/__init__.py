"""The ``cdlm`` command. Each area registers its commands from its own module here; heavy
imports (torch, transformers, llama_cpp) happen inside the commands, so ``cdlm --help`` is fast.
"""

from __future__ import annotations

import sys

import typer

from cdlm.errors import CdlmError

app = typer.Typer(
    name="cdlm",
    help="Cross-domain NER: a causal, label-graph tagger plus an LLM for the hard cases.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the cdlm version."""
    from cdlm import __version__

    print(__version__)


def _register() -> None:
    from cdlm.cli import augment, data, graphs, llm, model, predict, probe, prompts, run, serve

    for module in (data, run, predict, serve, model, graphs, probe, llm, prompts, augment):
        module.register(app)


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    _register()
    try:
        app()
    except CdlmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
