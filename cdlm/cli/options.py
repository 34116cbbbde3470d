"""Options shared by several commands, so they are spelt the same everywhere.

Every command that writes something takes ``--output/-o``. The names used before
(``--out``, ``--dest``, ``--results-dir``) still work as hidden aliases, so old scripts keep
running; :func:`pick_output` merges the two and refuses both at once.

Every command that reads a config takes ``--config FILE`` and the repeatable ``--set KEY=VALUE``
(:data:`SetOption`; :func:`with_sets` puts them on top of the command's own options). The
options several commands share are typed here once (``...Option`` aliases), so a command's
signature is one line per option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from cdlm.errors import ConfigError

T = TypeVar("T")

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


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Set one config key, e.g. --set train.target_epochs=5 (dotted key; the value is "
        "read as JSON: numbers, true/false, lists, else a string); repeat for several. Wins "
        "over --config.",
    ),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="TOML config file (--set and options win).")
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="CrossNER data folder.")]
RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", help="Runs folder (default: $CDLM_RUNS_DIR or ./runs)."),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="Model: 'default' (shipped with cdlm), 'default-build' (`cdlm model "
        "build-default`), a model folder "
        "(save_pretrained) or a `cdlm train` run.",
    ),
]
HeadOption = Annotated[
    str | None,
    typer.Option(
        "--domain",
        help="Which head: news, politics, science, music, literature or ai for the default "
        "model (default: news); a `cdlm train` run has its own domain only.",
    ),
]
PlotOption = Annotated[
    bool,
    typer.Option(
        "--plot",
        help="Also write PNGs beside the results (needs the plot extra).",
    ),
]
# The LLM of a run: --llm picks the backend; --model and --base-url say which model and where.
LLMModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="With an LLM: GGUF path (llama) or model name (gpt) (default: embedded SmolLM2 / "
        "gpt-3.5-turbo-0125).",
    ),
]
BaseUrlOption = Annotated[
    str | None, typer.Option("--base-url", help="With --llm gpt: OpenAI-compatible server URL.")
]
LabelsOption = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help='With an LLM: label file of the domain ([types] name = "description"); default: '
        "labels/<domain>.toml of the prompts, else the type names alone.",
    ),
]


def parse_sets(sets: list[str] | None, options: dict[str, Any]) -> dict[str, Any]:
    """The user's ``--set KEY=VALUE`` as dotted overrides (:func:`cdlm.config.parse_overrides`);
    a key one of the command's ``options`` gives (not ``None``) and ``--set`` gives another
    value is an error, not a silent choice."""
    from cdlm.config import parse_overrides

    extra = parse_overrides(sets or [])
    for key, value in extra.items():
        if options.get(key) is not None and options[key] != value:
            raise ConfigError(
                f"--set {key}: an option of this command sets it to {options[key]!r} "
                "already; give it once"
            )
    return extra


def with_sets(overrides: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """The dotted ``overrides`` a command's options make, with the user's ``--set`` on top."""
    return {**overrides, **parse_sets(sets, overrides)}
