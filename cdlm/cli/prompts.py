"""``cdlm prompts check [DIR]`` and ``cdlm prompts export DIR``: the LLM stage templates (see
:mod:`cdlm.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

prompts_app = typer.Typer(
    help="Prompt templates of the LLM stages and label descriptions (shipped in the package, "
    "cdlm/prompts/; export a copy to edit and use it with --set reasoning.prompts_dir=DIR).",
    no_args_is_help=True,
)


@prompts_app.command("check")
def check(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Prompts folder (default: the templates inside the package)."),
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


@prompts_app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Folder to copy the default prompts into.")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files that exist in DIR already.")
    ] = False,
) -> None:
    """Copy the default templates and label files out of the package, to edit them.

    Use the copy with --set reasoning.prompts_dir=DIR."""
    from cdlm.reasoning.templates import export_prompts

    written = export_prompts(directory, force=force)
    typer.echo(
        f"wrote {len(written)} files to {directory}; check them with `cdlm prompts check "
        f"{directory}` and use them with --set reasoning.prompts_dir={directory}"
    )


def register(app: typer.Typer) -> None:
    """Add ``cdlm prompts ...`` to the main app."""
    app.add_typer(prompts_app, name="prompts")
