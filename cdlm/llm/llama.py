"""The ``llama`` backend: any GGUF through llama-cpp-python, decoding constrained by the schema.

The chat template comes from the GGUF itself, so any instruct model works without a per-model
format table. The prompt is tokenized in pieces (:meth:`LlamaBackend.prompt_tokens`): the
template's own text with special tokens, the messages' contents without, so an input that types
``<|im_end|>`` or ``<|start_header_id|>`` stays text and cannot open a turn of its own.

The stage's bounded JSON schema becomes a llama.cpp grammar with no free whitespace
(:mod:`cdlm.llm.grammar`), so the answer always parses and carries no padding; pydantic still
validates it (and the shared loop repairs what a grammar cannot express, e.g. custom validators
or a cut-off answer).

Choice answers with ``logprobs`` are scored, not generated (:meth:`LlamaBackend._score`): the
prompt and the answer's fixed parts (``{"c0":"``) are evaluated in one pass, and at each letter
position the logits of the offered letters, renormalised, give that field's distribution; its
most probable letter is written and the pass goes on. That is what greedy decoding under the
grammar picks at the same position, without sampling a token. Reasons that follow the letters
are then generated under a grammar for the rest of the object.

KV-cache reuse (``llm.kv_cache``): the reasoning stages send many prompts that share a long
prefix (system prompt, label descriptions). ``"last"`` keeps llama.cpp's own reuse of the
longest common prefix with the previous prompt; ``"ram"`` also keeps saved states of earlier
prompts (``LlamaRAMCache``), which helps when stages alternate; ``"off"`` re-evaluates every
prompt (only useful to measure the difference). ``evals/bench_llm.py`` measures them.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pydantic import BaseModel

from cdlm.config import LLMConfig
from cdlm.errors import ContextOverflowError, LLMError, ModelNotFoundError, require
from cdlm.llm.base import Message
from cdlm.llm.cache import AnswerCache
from cdlm.llm.choice import choice_layout, renormalise
from cdlm.llm.embedded import NOTICE, embedded_gguf_path
from cdlm.llm.grammar import compact_gbnf, tail_gbnf
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
        llama_cpp = require("llama_cpp", "llama", "--llm llama")
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

    def _grammar(self, schema: type[BaseModel] | dict[str, Any], tail: bool = False) -> Any:
        """The schema's compact grammar (or, with ``tail``, that of the rest of an object whose
        first fields are written), built once. Built here rather than via ``response_format``
        so a schema llama.cpp cannot convert fails loudly instead of silently becoming free
        JSON."""
        from llama_cpp import LlamaGrammar

        if isinstance(schema, dict):
            text = json.dumps(schema, sort_keys=True)
        else:
            text = schema_json(schema)
        key = f"tail:{text}" if tail else text
        if key not in self._grammars:
            gbnf = tail_gbnf(json.loads(text)) if tail else compact_gbnf(text)
            self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

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
        return len(self.prompt_tokens(messages))

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        """Token ids of the chat prompt as the GGUF's template renders it, ready for the
        assistant's answer. The template's own text (role markers) is read with special tokens
        on, the messages' contents with them off: ``<|im_end|>`` typed in an input is text,
        never the end of a turn. The template is rendered with a placeholder per content,
        which must come out once each, in order (a template that rewrites contents is an
        error rather than a prompt with live markers)."""
        formatter = self._formatter()
        if formatter is None:
            raise LLMError(f"{self.path}: the GGUF has no chat template to score answers with")
        mark = f"cdlm{uuid.uuid4().hex}x"
        slots = [m.model_copy(update={"content": f"{mark}{i}x"}) for i, m in enumerate(messages)]
        rendered = formatter(messages=[m.model_dump() for m in slots])
        parts = re.split(f"{mark}(\\d+)x", rendered.prompt)
        if [int(i) for i in parts[1::2]] != list(range(len(messages))):
            raise LLMError(
                f"{self.path}: the GGUF's chat template does not copy message contents as they "
                "are; cdlm cannot keep input text apart from its turn markers"
            )
        tokens: list[int] = []
        for k, part in enumerate(parts):
            text = messages[int(part)].content if k % 2 else part
            first = not tokens and not rendered.added_special
            tokens += self.llm.tokenize(text.encode("utf-8"), add_bos=first, special=not k % 2)
        return tokens

    def _fits(self, prompt_tokens: int, max_tokens: int) -> None:
        """The prompt plus room for a full answer must fit the context, so an answer is never
        cut short by the context (llama.cpp would silently shorten it)."""
        if prompt_tokens + max_tokens > self.n_ctx:
            raise ContextOverflowError(self._context_message(prompt_tokens, max_tokens, self.n_ctx))

    def _generate(
        self,
        messages: list[Message],
        schema: type[BaseModel],
        max_tokens: int,
        logprobs: bool = False,
    ) -> Generation:
        if logprobs:
            return self._score(messages, schema, max_tokens)
        grammar = self._grammar(schema)
        # With the GGUF's template, the prompt is ours (prompt_tokens: input text never parsed
        # for special tokens); without one, llama-cpp-python's default chat format.
        prompt = self.prompt_tokens(messages) if self._formatter() is not None else None
        self._fits(len(prompt) if prompt else self.count_prompt_tokens(messages), max_tokens)
        params = {
            "grammar": grammar,
            "temperature": self.cfg.temperature,
            "max_tokens": max_tokens,
            "seed": self.cfg.seed,
        }
        with self._lock:
            if self.cfg.kv_cache == "off":
                self.llm.reset()
            try:
                if prompt is not None:
                    out = self.llm.create_completion(prompt=prompt, **params)
                else:
                    out = self.llm.create_chat_completion(
                        messages=[m.model_dump() for m in messages], **params
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
        text = choice["text"] if "text" in choice else choice["message"].get("content")
        return Generation(
            text=text or "",
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

    # -- choice answers scored from the logits ---------------------------------------------
    def letter_token(self, letter: str) -> int:
        """The single token of an option letter (every common tokenizer has one)."""
        ids = self.tokenize(letter)
        if len(ids) != 1:
            raise LLMError(f"{self.path}: option letter {letter!r} is not one token")
        return ids[0]

    def _logits_after(self, tokens: list[int]) -> np.ndarray:
        """The next-token logits after ``tokens``, evaluating only what the context does not
        hold yet (the longest common prefix with the previous evaluation is kept, as llama.cpp
        does for prompts; ``llm.kv_cache = "off"`` re-evaluates everything)."""
        llm = self.llm
        keep = 0
        if self.cfg.kv_cache != "off":
            held = llm.input_ids[: llm.n_tokens]
            for a, b in zip(held, tokens[:-1], strict=False):  # at least one token is evaluated
                if a != b:
                    break
                keep += 1
        if keep == 0 or not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.reset()
            keep = 0
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        logits = llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(logits, shape=(llm.n_vocab(),)).astype(np.float64)

    def _score(
        self, messages: list[Message], schema: type[BaseModel], max_tokens: int
    ) -> Generation:
        """A choice answer from one pass over prompt and answer (see the module docstring)."""
        layout = choice_layout(schema)
        prompt = self.prompt_tokens(messages)
        self._fits(len(prompt), max_tokens)
        answer, probs = "{", {}
        with self._lock:
            if self.cfg.kv_cache == "off":
                self.llm.reset()
            for i, (name, options) in enumerate(layout.fields):
                answer += ("," if i else "") + json.dumps(name) + ':"'
                logits = self._logits_after(prompt + self.tokenize(answer))
                ids = [self.letter_token(o) for o in options]
                probs[name] = renormalise(dict(zip(options, logits[ids], strict=True)), options)
                best = int(np.argmax(logits[ids]))  # ties: the first option
                answer += options[best] + '"'
            truncated = False
            if layout.rest is None:
                answer += "}"
            else:  # reasons after the fixed letters, generated under the rest's grammar
                used = len(self.tokenize(answer))
                out = self.llm.create_completion(
                    prompt=prompt + self.tokenize(answer),
                    grammar=self._grammar(layout.rest, tail=True),
                    temperature=self.cfg.temperature,
                    max_tokens=max(1, max_tokens - used),
                    seed=self.cfg.seed,
                )
                answer += out["choices"][0]["text"]
                truncated = out["choices"][0].get("finish_reason") == "length"
        return Generation(
            text=answer,
            prompt_tokens=len(prompt),
            completion_tokens=len(self.tokenize(answer)),
            truncated=truncated,
            probs=probs if probs else None,
        )

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (for benchmarks and prompt budgeting)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
