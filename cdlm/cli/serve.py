"""``cdlm serve``: the HTTP service (:mod:`cdlm.serve`) over a model loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cdlm.cli.options import ConfigOption, SetOption, with_sets
from cdlm.config import QuantizeMode


def serve(
    checkpoint: Annotated[
        str, typer.Option(help="Model: 'default', a model name or a model folder (as predict).")
    ] = "default",
    host: Annotated[
        str | None,
        typer.Option(help="Address to bind (default: serve.host = 127.0.0.1, this machine only)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: serve.port = 8000; 0 = any free port, printed)."),
    ] = None,
    micro_batch: Annotated[
        bool | None,
        typer.Option(
            "--micro-batch/--no-micro-batch",
            help="Merge concurrent requests into one forward pass (default: serve.micro_batch).",
        ),
    ] = None,
    quantize: Annotated[
        QuantizeMode, typer.Option(help="int8: quantized encoder, faster on CPU.")
    ] = "none",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.", min=1)] = None,
    allow_llm: Annotated[
        bool,
        typer.Option(
            "--allow-llm",
            help="Let requests switch on the LLM ([llm] of the config; default: off, 403).",
        ),
    ] = False,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    """Serve POST /predict, GET /health and GET /labels until Ctrl-C.

    A bearer key is read only from $CDLM_SERVE_KEY (serve.api_key_env); a host other than
    loopback is refused without it."""
    from cdlm.config import load_config
    from cdlm.inference.model import CDLM

    create_app, check_exposure, run = _serve_parts()
    overrides = {"serve.host": host, "serve.port": port, "serve.micro_batch": micro_batch}
    overrides["serve.allow_llm"] = True if allow_llm else None
    cfg = load_config(config, with_sets(overrides, sets))
    check_exposure(cfg.serve.host, cfg.serve.api_key_env)  # before the model loads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    m = CDLM.from_pretrained(checkpoint, config=cfg, quantize=quantize)
    # The operator's LLM, as `cdlm augment` picks it: [llm], or the embedded SmolLM2.
    llm = cfg.llm if cfg.llm.backend != "none" else cfg.llm.model_copy(update={"backend": "llama"})
    # Clients see the model folder's name, never its path on this machine.
    app = create_app(m, cfg.serve, name=Path(checkpoint).name or checkpoint, llm=llm)
    run(app, cfg.serve.host, cfg.serve.port)


def _serve_parts():  # -> (create_app, check_exposure, run)
    """The service's parts, or a one-line error naming the extra to install."""
    try:
        from cdlm.serve.app import create_app
        from cdlm.serve.server import check_exposure, run
    except ImportError as exc:
        from cdlm.errors import ConfigError

        raise ConfigError(
            f"cdlm serve needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'cdlm[serve]'"
        ) from None
    return create_app, check_exposure, run


def register(app: typer.Typer) -> None:
    app.command()(serve)
