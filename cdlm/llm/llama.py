"""The ``llama`` backend: any GGUF through llama-cpp-python, decoding constrained by the schema.

The chat template comes from the GGUF itself (``create_chat_completion``), so any instruct
model works without a per-model format table. The stage's bounded JSON schema becomes a
llama.cpp grammar, so the answer always parses; pydantic still validates it (and the shared loop
repairs what a grammar cannot express, e.g. custom validators or a cut-off answer).

KV-cache reuse (``llm.kv_cache``): the reasoning stages send many prompts that share a long
prefix (system prompt, label descriptions). ``"last"`` keeps llama.cpp's own reuse of the
longest common prefix with the previous prompt; ``"ram"`` also keeps saved states of earlier
prompts (``LlamaRAMCache``), which helps when stages alternate; ``"off"`` re-evaluates every
prompt (only useful to measure the difference). ``evals/bench_llm.py`` measures them.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

from cdlm.config import LLMConfig
from cdlm.errors import ContextOverflowError, LLMError, ModelNotFoundError, optional_import
from cdlm.llm.base import Message
from cdlm.llm.cache import AnswerCache
from cdlm.llm.embedded import NOTICE, embedded_gguf_path
from cdlm.llm.schema import schema_json
from cdlm.llm.structured import Generation, SerialBackend

GGUF_MAGIC = b"GGUF"
_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")
_ID_CHUNK = 1 << 20  # bytes hashed from each end of the file for the model identity


def check_gguf(path: Path) -> Path:
    """A readable GGUF file, or a one-line error saying what is wrong with ``path``."""
    if not path.exists():
        raise ModelNotFoundError(
            f"{path}: GGUF model file not found (pass --model PATH.gguf, e.g. "
            "Meta-Llama-3.1-8B-Instruct.Q4_K_M.gguf)"
        )
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: is a directory, expected a .gguf file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise LLMError(
            f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF'); convert the "
            "model with llama.cpp's convert_hf_to_gguf.py"
        )
    return path


def gguf_identity(path: Path) -> str:
    """Content identity for cache keys: size plus hashes of the first and last MiB.

    Path and mtime are left out on purpose: a copied or re-downloaded file keeps its cache,
    while two fine-tunes of one base (same header, different tensors) differ in the last MiB.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_ID_CHUNK))
        fh.seek(max(0, size - _ID_CHUNK))
        digest.update(fh.read(_ID_CHUNK))
    return f"gguf:{digest.hexdigest()[:32]}"


class LlamaBackend(SerialBackend):
    """A local GGUF chat model answering in a pydantic schema."""

    name = "llama"
    schema_in_prompt_default = False  # the JSON grammar already enforces the schema

    def __init__(
        self,
        cfg: LLMConfig,
        cache: AnswerCache | None = None,
        *,
        notice: TextIO | None = sys.stderr,
    ) -> None:
        super().__init__(cfg, cache)
        if cfg.model:
            path = Path(cfg.model).expanduser()
        else:
            path = embedded_gguf_path()
            if notice is not None:
                print(NOTICE, file=notice)
        self.path = check_gguf(path)
        self.model = str(self.path)
        self._model_id = gguf_identity(self.path)
        self._grammars: dict[str, Any] = {}
        self._chat_formatter: Any = None
        self.llm = self._load()

    def _load(self) -> Any:
        llama_cpp = optional_import("llama_cpp", "llama", "--llm llama")

        cfg = self.cfg
        try:
            llm = llama_cpp.Llama(
                model_path=str(self.path),
                n_ctx=cfg.n_ctx,
                n_threads=cfg.n_threads,  # None: llama.cpp's default, half the cores
                n_gpu_layers=cfg.n_gpu_layers,
                seed=cfg.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"{self.path}: llama.cpp could not load the model: {exc}") from None
        if cfg.kv_cache == "ram":
            llm.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=cfg.kv_cache_mb << 20))
        return llm

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def _grammar(self, schema: type[BaseModel]) -> Any:
        """The schema's grammar, built once. Built here rather than via ``response_format`` so a
        schema llama.cpp cannot convert fails loudly instead of silently becoming free JSON."""
        from llama_cpp import LlamaGrammar

        text = schema_json(schema)
        if text not in self._grammars:
            self._grammars[text] = LlamaGrammar.from_json_schema(text, verbose=False)
        return self._grammars[text]

    def _formatter(self) -> Any:
        """The GGUF's own chat template as a formatter (None if the file has none)."""
        if self._chat_formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            meta = self.llm.metadata or {}
            template = meta.get("tokenizer.chat_template")
            if template is None:
                return None
            vocab = self.llm._model
            eos = vocab.token_get_text(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""
            bos = vocab.token_get_text(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
            self._chat_formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
        return self._chat_formatter

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """Tokens of the rendered chat prompt (an estimate if the GGUF has no chat template)."""
        formatter = self._formatter()
        if formatter is None:
            text = "\n".join(m.content for m in messages)
            return len(self.tokenize(text)) + 8 * len(messages)
        rendered = formatter(messages=[m.model_dump() for m in messages])
        ids = self.llm.tokenize(
            rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
        )
        return len(ids)

    def _generate(
        self, messages: list[Message], schema: type[BaseModel], max_tokens: int
    ) -> Generation:
        grammar = self._grammar(schema)
        # Checked up front: the prompt plus room for a full answer must fit the context, so an
        # answer is never cut short by the context (llama.cpp would silently shorten it).
        prompt_tokens = self.count_prompt_tokens(messages)
        if prompt_tokens + max_tokens > self.n_ctx:
            raise ContextOverflowError(self._context_message(prompt_tokens, max_tokens, self.n_ctx))
        with self._lock:
            if self.cfg.kv_cache == "off":
                self.llm.reset()
            try:
                out = self.llm.create_chat_completion(
                    messages=[m.model_dump() for m in messages],
                    grammar=grammar,
                    temperature=self.cfg.temperature,
                    max_tokens=max_tokens,
                    seed=self.cfg.seed,
                )
            except ValueError as exc:
                found = _TOO_LONG.search(str(exc))
                if found is None:
                    raise
                need, have = int(found.group(1)), int(found.group(2))
                raise ContextOverflowError(self._context_message(need, max_tokens, have)) from None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens", 0))
        truncated = choice.get("finish_reason") == "length"
        if truncated and prompt_tokens + max_tokens > self.n_ctx:
            raise ContextOverflowError(self._context_message(prompt_tokens, max_tokens, self.n_ctx))
        return Generation(
            text=choice["message"].get("content") or "",
            prompt_tokens=prompt_tokens,
            completion_tokens=int(usage.get("completion_tokens", 0)),
            truncated=truncated,
        )

    def _context_message(self, prompt_tokens: int, max_tokens: int, n_ctx: int) -> str:
        need = prompt_tokens + max_tokens
        return (
            f"{self.path.name}: prompt of {prompt_tokens} tokens + answer budget "
            f"{max_tokens} (llm.max_tokens / llm.stage_max_tokens) does not fit the "
            f"{n_ctx}-token context (short by "
            f"{need - n_ctx} tokens); set llm.n_ctx (--n-ctx) to at least {need}"
        )

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (for benchmarks and prompt budgeting)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
