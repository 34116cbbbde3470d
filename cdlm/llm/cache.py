"""Persistent answer cache shared by all backends (diskcache, i.e. sqlite plus files).

The key is the sha256 of everything that can change the answer: backend, model identity,
sampling parameters, the output schema and the fully rendered messages. So an edited template,
a new temperature or another GGUF is a miss, while an interrupted run re-asks nothing it already
got: each validated answer is written as soon as it arrives, and so is each request that never
validated (with how many attempts it had; more ``llm.repair_retries`` asks again). Only the
answer text and its token counts (or the validation error) are stored -- never the key
material, and never an API key (keys are not an input).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cdlm.config import cache_home
from cdlm.llm.base import Message


def default_cache_dir() -> Path:
    return cache_home() / "llm"


def cache_key(
    *,
    backend: str,
    model_id: str,
    params: dict[str, Any],
    schema: str,
    messages: list[Message],
) -> str:
    material = {
        "backend": backend,
        "model": model_id,
        "params": params,
        "schema": schema,
        "messages": [m.model_dump() for m in messages],
    }
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class AnswerCache:
    """Validated answers by :func:`cache_key`. Safe to share between threads and processes."""

    def __init__(self, directory: Path | str | None = None) -> None:
        import diskcache

        self.directory = Path(directory) if directory else default_cache_dir()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory))

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._cache.get(key)
        return json.loads(value) if isinstance(value, str) else None

    def put(self, key: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        record = {"text": text, "prompt": prompt_tokens, "completion": completion_tokens}
        self._cache.set(key, json.dumps(record))

    def put_failure(self, key: str, error: str, attempts: int) -> None:
        """Remember that ``attempts`` tries never validated, so a re-run does not pay again."""
        self._cache.set(key, json.dumps({"failed": error, "attempts": attempts}))

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()
