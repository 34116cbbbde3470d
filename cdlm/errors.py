"""User-facing errors.

Anything a user can cause (bad file, missing model, unreachable server) raises a ``CdlmError``
whose message is one self-contained line naming the file and line, or the field. The CLI prints
``error: <message>`` and exits with ``exit_code``; no traceback.
"""

from __future__ import annotations

from typing import Any


class CdlmError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code: int = 2


class DataError(CdlmError):
    """Malformed or missing dataset file."""


class ConfigError(CdlmError):
    """Invalid configuration value or file."""


class ModelNotFoundError(CdlmError):
    """A checkpoint, encoder or GGUF file that does not exist; the message says how to make one."""


class LLMError(CdlmError):
    """An LLM backend failed in a way retries could not fix (unreachable, no key, context)."""


class ContextOverflowError(LLMError):
    """One prompt plus its answer budget does not fit the model's context window.

    A setup error for a single call (``cdlm llm ping``); the reasoning stages instead fall back
    to the tagger for that sentence and count it, so one long sentence cannot stop a whole run.
    """


class TemplateError(CdlmError):
    """A prompt template that does not render or uses unknown variables."""


class MissingExtraError(CdlmError):
    """An optional dependency (an extra of the cdlm package) is not installed."""


def optional_import(module: str, extra: str, what: str) -> Any:
    """``import module``, or a one-line error naming the extra that installs it (``llama``,
    ``plot``): core cdlm does not pull llama-cpp-python or matplotlib."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{what} needs the '{module}' package: pip install 'cdlm[{extra}]'"
        ) from None
