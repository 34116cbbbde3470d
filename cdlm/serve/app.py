"""The HTTP API of ``cdlm serve`` (FastAPI), over a loaded :class:`cdlm.CDLM`.

- ``POST /predict`` ``{"texts": [...], "domain"?, "threshold"?, "llm"?}`` ->
  ``{"model", "domain", "entities": [[{start, end, text, label, score, source}, ...], ...]}``,
  one entity list per text, in order.
- ``GET /health`` -> ``{"status": "ok", "model", "domains", "queue": {...}}``.
- ``GET /labels`` (``?domain=``) -> ``{"domains": {domain: [types]}}``.

Checked before a body is read (:class:`Guard`, ``[serve]`` in the config): the ``Host`` header
must be one of ``trusted_hosts`` (403; stops DNS rebinding); when the environment variable named
by ``api_key_env`` (``CDLM_SERVE_KEY``) is set, every route but ``/health`` needs
``Authorization: Bearer <key>`` (401; ``/health`` then shows only the status to others);
``POST /predict`` needs ``Content-Type: application/json`` (415).

Limits: a body over ``max_body_bytes`` is answered 413 before it is read whole; more than
``max_texts`` texts or a text over ``max_text_chars`` characters is 413 with a message naming the
limit; a malformed body, an unknown domain or LLM, or a text that is not valid Unicode (a lone
surrogate, ``texts[k]`` named) is 422. ``"llm"`` other than none is 403 unless the operator
allowed it (``serve.allow_llm``, ``cdlm serve --allow-llm``); allowed, it runs the operator's LLM,
whatever the request names. A full queue or a dead batcher is 503 with ``Retry-After``, no answer
within ``request_timeout_s`` is 504, an LLM failure is 502 and anything else 500: those bodies are
generic, the detail (paths, URLs) goes to the server log only. Concurrent requests are
micro-batched (:mod:`cdlm.serve.batcher`); one bad text fails only its own request.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Hashable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from cdlm.config import LLMChoice, ServeConfig
from cdlm.errors import CdlmError
from cdlm.serve.batcher import BatcherDead, Entities, MicroBatcher, QueueFull, RequestTimeout

log = logging.getLogger("cdlm.serve")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
LLM_OFF = (
    "the LLM is not enabled on this server (the operator did not start it with --allow-llm); "
    'send "llm": "none" or leave it out'
)
LLM_FAILED = "the LLM backend failed (see the server log)"
MODEL_FAILED = "the model failed on this request (see the server log)"


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
    llm: LLMChoice | None = None


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


class Guard:
    """ASGI middleware in front of every route, before any body is read: a ``Host`` outside
    ``hosts`` is 403 (None = any), a missing or wrong bearer ``key`` is 401 (None = no key;
    ``/health`` stays open), a ``POST /predict`` that is not JSON is 415."""

    def __init__(self, app: Any, hosts: set[str] | None, key: str | None) -> None:
        self.app, self.hosts, self.key = app, hosts, key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path, given = scope["path"], headers.get("authorization")
        if self.hosts is not None and host_of(headers.get("host", "")) not in self.hosts:
            await _reply(send, 403, "Host header not allowed (serve.trusted_hosts)")
        elif self.key and path != "/health" and not authorized(given, self.key):
            challenge = ((b"www-authenticate", b"Bearer"),)
            await _reply(send, 401, "missing or wrong key (Authorization: Bearer <key>)", challenge)
        elif scope["method"] == "POST" and path == "/predict" and not _is_json(headers):
            await _reply(send, 415, "POST /predict needs Content-Type: application/json")
        else:
            await self.app(scope, receive, send)


def host_of(header: str) -> str:
    """The host of a ``Host`` header: port and IPv6 brackets stripped, lower case."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def authorized(header: str | None, key: str) -> bool:
    """An ``Authorization: Bearer <key>`` header, compared in constant time (no timing oracle)."""
    scheme, _, token = (header or "").partition(" ")
    given = token.strip().encode("latin-1")  # the bytes the client sent
    return scheme.lower() == "bearer" and hmac.compare_digest(given, key.encode())


def _is_json(headers: dict[str, str]) -> bool:
    """``application/json``, with no parameter but an optional UTF-8 charset."""
    kind, *params = (p.strip().lower() for p in headers.get("content-type", "").split(";"))
    return kind == "application/json" and all(
        p.replace('"', "") in ("charset=utf-8", "charset=utf8") for p in params
    )


async def _reply(
    send: Any, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})


def trusted_hosts(config: ServeConfig) -> set[str] | None:
    """The ``Host`` values accepted: ``serve.trusted_hosts`` or loopback plus ``serve.host``
    (None = any, for ``"*"``)."""
    hosts = config.trusted_hosts if config.trusted_hosts is not None else [*LOOPBACK, config.host]
    return None if "*" in hosts else {host_of(h) for h in hosts}


def create_app(
    model: Model, config: ServeConfig | None = None, *, name: str = "default", llm: Any = "llama"
):
    """The FastAPI app serving ``model`` (``name`` is what ``/health`` reports). ``llm`` is the
    operator's LLM (as ``CDLM.predict`` takes it), run for requests that ask for one when
    ``config.allow_llm``. The bearer key is read here from ``$<config.api_key_env>``."""
    from fastapi import FastAPI, Header, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    config = config or ServeConfig()
    key = os.environ.get(config.api_key_env) or None
    busy = {"Retry-After": str(config.retry_after_s)}

    def run(texts: list[str], options: Hashable) -> list[Entities]:
        domain, threshold, use_llm = options  # type: ignore[misc]
        return model.predict(
            texts,
            domain=domain,
            threshold=threshold,
            llm=llm if use_llm else None,
            batch_size=config.batch_size,
        )

    batcher = MicroBatcher(
        run,
        max_batch_texts=config.max_batch_texts,
        max_wait_s=config.max_wait_ms / 1000.0,
        enabled=config.micro_batch,
        max_queue=config.max_queue,
        timeout_s=config.request_timeout_s,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="cdlm", summary="Named entities with character offsets", lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(Guard, hosts=trusted_hosts(config), key=key)  # outermost: runs first

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        """422 without the echoed input (ASCII JSON, so a lone surrogate in a key is safe)."""
        errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        body = json.dumps({"detail": errors}, default=str)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        """Any other error: 500 with a generic body, the traceback in the server log."""
        log.error("cdlm serve: %s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error (see the server log)"}, 500)

    def domain_of(domain: str | None) -> str:
        try:
            return model.resolve(domain)
        except CdlmError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/predict", response_model=PredictResponse)
    async def predict(request: PredictRequest) -> PredictResponse:
        use_llm = request.llm not in (None, "none")
        if use_llm and not config.allow_llm:
            raise HTTPException(403, LLM_OFF)
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
            if not _utf8(text):
                raise HTTPException(
                    422, f"texts[{k}] is not valid Unicode text (a lone surrogate such as \\ud800?)"
                )
        domain = domain_of(request.domain)
        try:
            entities = await batcher.submit(request.texts, (domain, request.threshold, use_llm))
        except (QueueFull, BatcherDead) as exc:
            raise HTTPException(503, f"busy: {exc}; retry later", headers=busy) from None
        except RequestTimeout as exc:
            raise HTTPException(504, f"{exc} (serve.request_timeout_s)") from None
        except Exception as exc:  # the request was valid: a server-side failure
            log.error("cdlm serve: model call failed: %s", exc, exc_info=exc)
            if use_llm and isinstance(exc, CdlmError):
                raise HTTPException(502, LLM_FAILED) from None
            raise HTTPException(500, MODEL_FAILED) from None
        return PredictResponse(model=name, domain=domain, entities=entities)

    @app.get("/health")
    async def health(authorization: str | None = Header(None)) -> Response:
        """Liveness: 503 ``dead`` once the batcher has died. The details need the key."""
        status, code = ("dead", 503) if batcher.dead else ("ok", 200)
        headers = busy if batcher.dead else None
        if key and not authorized(authorization, key):
            return JSONResponse({"status": status}, code, headers)
        s = batcher.stats
        body = {
            "status": status,
            "model": name,
            "domains": model.domains,
            "micro_batch": config.micro_batch,
            "queue": {"waiting": batcher.waiting, "requests": s.requests, "answered": s.answered},
            "calls": {"calls": s.calls, "texts": s.texts, "largest": s.largest_call},
        }
        return JSONResponse(body, code, headers)

    @app.get("/labels")
    async def labels(domain: str | None = None) -> dict[str, Any]:
        names = [domain_of(domain)] if domain is not None else model.domains
        return {"domains": {d: model.labels(d) for d in names}}

    return app


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: JSON lets a lone surrogate through, the tokenizer not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
