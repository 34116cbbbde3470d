"""The HTTP API of ``cdlm serve`` (FastAPI), over a loaded :class:`cdlm.CDLM`.

- ``POST /predict`` ``{"texts": [...], "domain"?, "threshold"?, "llm"?}`` ->
  ``{"model", "domain", "entities": [[{start, end, text, label, score, source}, ...], ...]}``,
  one entity list per text, in order.
- ``GET /health`` -> ``{"status": "ok", "model", "domains", "queue": {...}}``.
- ``GET /labels`` (``?domain=``) -> ``{"domains": {domain: [types]}}``.

Limits (``[serve]`` in the config): a body over ``max_body_bytes`` is answered 413 before it is
read whole; more than ``max_texts`` texts or a text over ``max_text_chars`` characters is 413 with
a message naming the limit; a malformed body, an unknown domain or LLM is 422; a full queue is
503. Concurrent requests are micro-batched (:mod:`cdlm.serve.batcher`).
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from cdlm.config import ServeConfig
from cdlm.errors import CdlmError, LLMError
from cdlm.serve.batcher import Entities, MicroBatcher, QueueFull


class Model(Protocol):
    """What the service needs of a model (:class:`cdlm.CDLM` has it)."""

    @property
    def domains(self) -> list[str]: ...

    def resolve(self, domain: str | None) -> str: ...

    def labels(self, domain: str | None = None) -> list[str]: ...

    def predict(self, texts: list[str], **options: Any) -> Any: ...


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1)
    domain: str | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    llm: Literal["none", "llama", "gpt"] | None = None


class PredictResponse(BaseModel):
    model: str
    domain: str
    entities: list[list[dict[str, Any]]]


class BodySizeLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413, by its
    ``Content-Length`` before reading, or as soon as a chunked body passes the limit (the body
    is read here, at most ``max_bytes`` of it, and handed on whole)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if length > self.max_bytes:
                await _reply(send, 413, self._message(f"{length} bytes"))
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, self._message(f"more than {self.max_bytes} bytes"))
                return
            if not message.get("more_body", False):
                break
        body: dict | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay() -> dict:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: str) -> str:
        return f"request body of {size} exceeds serve.max_body_bytes ({self.max_bytes})"


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(model: Model, config: ServeConfig | None = None, *, name: str = "default"):
    """The FastAPI app serving ``model`` (``name`` is what ``/health`` reports)."""
    from fastapi import FastAPI, HTTPException

    config = config or ServeConfig()

    def run(texts: list[str], options: Hashable) -> list[Entities]:
        domain, threshold, llm = options  # type: ignore[misc]
        return model.predict(
            texts, domain=domain, threshold=threshold, llm=llm, batch_size=config.batch_size
        )

    batcher = MicroBatcher(
        run,
        max_batch_texts=config.max_batch_texts,
        max_wait_s=config.max_wait_ms / 1000.0,
        enabled=config.micro_batch,
        max_queue=config.max_queue,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cdlm", summary="Named entities with character offsets", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)

    def domain_of(domain: str | None) -> str:
        try:
            return model.resolve(domain)
        except CdlmError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> PredictResponse:
        if len(request.texts) > config.max_texts:
            raise HTTPException(
                413, f"{len(request.texts)} texts exceed serve.max_texts ({config.max_texts})"
            )
        for k, text in enumerate(request.texts):
            if len(text) > config.max_text_chars:
                raise HTTPException(
                    413,
                    f"texts[{k}] has {len(text)} characters, more than serve.max_text_chars "
                    f"({config.max_text_chars})",
                )
        domain = domain_of(request.domain)
        llm = None if request.llm in (None, "none") else request.llm
        try:
            entities = await batcher.submit(request.texts, (domain, request.threshold, llm))
        except QueueFull as exc:
            raise HTTPException(503, f"busy: {exc}; retry later") from None
        except LLMError as exc:
            raise HTTPException(502, str(exc)) from None
        except CdlmError as exc:
            raise HTTPException(422, str(exc)) from None
        return PredictResponse(model=name, domain=domain, entities=entities)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        s = batcher.stats
        return {
            "status": "ok",
            "model": name,
            "domains": model.domains,
            "micro_batch": config.micro_batch,
            "queue": {"waiting": batcher.waiting, "requests": s.requests, "answered": s.answered},
            "calls": {"calls": s.calls, "texts": s.texts, "largest": s.largest_call},
        }

    @app.get("/labels")
    async def labels(domain: str | None = None) -> dict[str, Any]:
        names = [domain_of(domain)] if domain is not None else model.domains
        return {"domains": {d: model.labels(d) for d in names}}

    return app
