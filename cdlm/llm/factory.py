"""Build the configured backend (with its answer cache) from an :class:`LLMConfig`."""

from __future__ import annotations

from cdlm.config import LLMConfig
from cdlm.errors import ConfigError
from cdlm.llm.base import LLMBackend
from cdlm.llm.cache import AnswerCache


def make_backend(cfg: LLMConfig, *, cache: bool = True) -> LLMBackend:
    """The ``llama`` or ``gpt`` backend described by ``cfg``; heavy imports happen here.

    With ``cache=True`` answers are stored in ``llm.cache_dir`` (default: the user cache folder
    ``platformdirs.user_cache_dir("cdlm")/llm``) and reused across runs.
    """
    store = AnswerCache(cfg.cache_dir) if cache else None
    if cfg.backend == "llama":
        from cdlm.llm.llama import LlamaBackend

        return LlamaBackend(cfg, store)
    if cfg.backend == "gpt":
        from cdlm.llm.gpt import GptBackend

        return GptBackend(cfg, store)
    raise ConfigError(f"field 'llm.backend': '{cfg.backend}' has no LLM; use 'llama' or 'gpt'")
