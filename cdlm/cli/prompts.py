"""``cdlm prompts check [DIR]``: validate the LLM stage templates (see :mod:`cdlm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

prompts_app = typer.Typer(
    help="Prompt templates of the LLM stages (prompts/).", no_args_is_help=True
)


@prompts_app.command("check")
def check(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Prompts folder (default: the repository's prompts/)."),
    ] = None,
) -> None:
    """Render every template with sample data; report unknown/missing variables as file:line."""
    from cdlm.reasoning.check import check_prompts
    from cdlm.reasoning.stages import registry
    from cdlm.reasoning.templates import default_prompts_dir

    folder = directory or default_prompts_dir()
    problems = check_prompts(folder)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {folder}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {folder} ({', '.join(registry)} templates and label files)")


def register(app: typer.Typer) -> None:
    """Add ``cdlm prompts ...`` to the main app."""
    app.add_typer(prompts_app, name="prompts")
