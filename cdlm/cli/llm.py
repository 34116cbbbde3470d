"""``cdlm llm ...``: check an LLM setup before a long run (registered by :mod:`cdlm.cli`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel, Field

llm_app = typer.Typer(help="LLM backends (llama.cpp GGUF or an OpenAI-compatible API).")


class PingEntity(BaseModel):
    text: str = Field(max_length=30)
    type: Literal["person", "location", "organisation", "other"]


class PingAnswer(BaseModel):
    """The small structured answer ``cdlm llm ping`` asks for."""

    entities: list[PingEntity] = Field(max_length=3)


PING_TEXT = "Marie Curie moved from Warsaw to Paris."


@llm_app.command("ping")
def ping(
    llm: Annotated[
        Literal["llama", "gpt"],
        typer.Option("--llm", help="Backend: llama (GGUF) or gpt (OpenAI API)."),
    ] = "llama",
    model: Annotated[
        str | None,
        typer.Option(help="llama: path to a GGUF (default: embedded SmolLM2); gpt: model name."),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="gpt: OpenAI-compatible server URL (or set OPENAI_BASE_URL)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file.")] = None,
    n_ctx: Annotated[int | None, typer.Option(help="llama: context size in tokens.")] = None,
    cache: Annotated[bool, typer.Option(help="Use the persistent answer cache.")] = False,
) -> None:
    """Send one small structured request; print the model, latency, tokens and the answer."""
    from cdlm.config import load_config
    from cdlm.llm.base import LLMOutputError, Message
    from cdlm.llm.factory import make_backend

    overrides = {"llm.backend": llm, "llm.model": model, "llm.base_url": base_url}
    cfg = load_config(config, {**overrides, "llm.n_ctx": n_ctx}).llm
    backend = make_backend(cfg, cache=cache)
    messages = [
        Message(role="system", content="You find named entities in text."),
        Message(role="user", content=f"List the named entities and their types in: {PING_TEXT}"),
    ]
    try:
        result = backend.complete(messages, PingAnswer, stage="ping")
    except LLMOutputError as exc:  # the setup works but the model answered nonsense
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    u = result.usage
    print(f"backend:  {backend.name}")
    print(f"model:    {backend.model}")
    print(f"latency:  {u.seconds:.2f} s{' (cache hit)' if u.cache_hit else ''}")
    print(f"tokens:   {u.prompt_tokens} prompt + {u.completion_tokens} completion")
    print(f"retries:  {u.retries}")
    print(f"answer:   {json.dumps(result.value.model_dump(), ensure_ascii=False)}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the main app."""
    app.add_typer(llm_app, name="llm")
