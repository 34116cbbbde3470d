"""The tagger: encoder -> word features (+ casing) -> [fusion] -> linear BIO head -> [causal].

``Tagger.forward`` is the one place the parts meet, in the order of docs/DESIGN.md:

    h, m = encode(batch)                       # word-level features [B, W, d], mask [B, W]
    if fusion: h, extra = fusion(h, m, batch)  # label-graph fusion (section 2)
    logits = head(dropout(h))                  # [B, W, L]
    if causal: logits, extra2 = causal(h, m, logits, batch, head)   # section 3
    loss = CE(logits, tags) + sum(extra losses, already weighted)

``fusion`` and ``causal`` are ``None`` unless their config switches build them. Words are labelled
on their first sub-token; sentences longer than the encoder window are windowed
(:mod:`cdlm.model.windowing`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from cdlm.config import CdlmConfig, from_saved, one_line
from cdlm.data.spans import label_types
from cdlm.errors import ConfigError, DataError, ModelNotFoundError
from cdlm.model.batching import length_batches
from cdlm.model.decode import decode
from cdlm.model.encoder import encoder_label, load_pretrained
from cdlm.model.features import CasingFeatures, word_shape
from cdlm.model.windowing import plan_windows
from cdlm.results import write_json

if TYPE_CHECKING:
    from cdlm.graphs import LabelGraphs
    from cdlm.model.views import Mention

IGNORE = -100  # tag id of padding words, skipped by the loss
CHECKPOINT_FORMAT = 1
HOW_TO_MAKE = (
    "reinstall cdlm for the shipped default model, or build it with `cdlm model build-default`, "
    "or train one with `cdlm train --target DOMAIN` and pass its folder"
)


@dataclass
class Batch:
    """A padded batch of sentences, as windows of sub-word pieces plus a word-level index.

    ``hidden[word_window[b, w], word_position[b, w]]`` is the first piece of word ``w`` of
    sentence ``b``. ``tags`` holds gold tag ids (``-100`` on padding) when the sentences are
    labelled; ``words`` and ``tag_names`` keep the plain strings for modules that need spans.
    """

    input_ids: torch.Tensor  # [N, P] windows of piece ids
    attention_mask: torch.Tensor  # [N, P]
    word_window: torch.Tensor  # [B, W] window index of each word
    word_position: torch.Tensor  # [B, W] piece position inside that window
    word_mask: torch.Tensor  # [B, W] bool, True on real words
    shape_ids: torch.Tensor  # [B, W] casing class (0 = padding)
    tags: torch.Tensor | None  # [B, W] gold tag ids, -100 on padding
    words: list[tuple[str, ...]] = field(default_factory=list)
    tag_names: list[tuple[str, ...]] | None = None

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in self.__dict__.items()
        }
        return Batch(**moved)


@dataclass
class TaggerOutput:
    logits: torch.Tensor  # [B, W, L]
    loss: torch.Tensor | None  # total loss (None without gold tags)
    losses: dict[str, torch.Tensor]  # each weighted component, "ner" included


class BatchBuilder:
    """Turns token lists (and optional tags) into a :class:`Batch` for one tokenizer."""

    def __init__(self, tokenizer: Any, labels: list[str], max_pieces: int, stride: int) -> None:
        if stride >= max_pieces - 2:
            raise ConfigError(
                f"encoder.stride ({stride}) must be smaller than encoder.max_pieces - 2 "
                f"({max_pieces - 2})"
            )
        self.tokenizer = tokenizer
        self.label_to_id = {label: i for i, label in enumerate(labels)}
        self.max_pieces = max_pieces
        self.stride = stride

    def word_pieces(
        self, token_lists: list[list[str]], masked: list[list[bool]] | None = None
    ) -> list[list[list[int]]]:
        """Piece ids per word; a word the tokenizer drops entirely (e.g. a zero-width space)
        becomes ``[UNK]`` so that every word keeps a position, and a word flagged in ``masked``
        becomes the encoder's mask token (one piece; ``[UNK]`` if the tokenizer has none)."""
        out: list[list[list[int]]] = []
        nonempty = [list(t) for t in token_lists if len(t)]
        enc = (
            self.tokenizer(
                nonempty, is_split_into_words=True, add_special_tokens=False, verbose=False
            )
            if nonempty
            else None
        )
        k = 0
        for tokens in token_lists:
            if not len(tokens):
                out.append([])
                continue
            assert enc is not None
            pieces: list[list[int]] = [[] for _ in tokens]
            for pid, wid in zip(enc["input_ids"][k], enc.word_ids(k), strict=True):
                if wid is not None:
                    pieces[wid].append(pid)
            k += 1
            unk = self.tokenizer.unk_token_id
            pieces = [p if p else [unk] for p in pieces]
            if masked is not None:
                mask_id = self.tokenizer.mask_token_id
                mask_piece = [mask_id if mask_id is not None else unk]
                flags = masked[len(out)]
                pieces = [mask_piece if flag else p for p, flag in zip(pieces, flags, strict=True)]
            out.append(pieces)
        return out

    def _tag_ids(self, tags: Sequence[str]) -> torch.Tensor:
        try:
            return torch.tensor([self.label_to_id[t] for t in tags])
        except KeyError as exc:
            raise DataError(
                f"tag {exc.args[0]!r} is not in the model's label set "
                f"({len(self.label_to_id)} tags)"
            ) from None

    def _padded(self, windows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input ids, attention mask) of the windows, padded to the longest."""
        width = max(len(w) for w in windows)
        input_ids = torch.full((len(windows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(windows), width), dtype=torch.long)
        for i, w in enumerate(windows):
            input_ids[i, : len(w)] = torch.tensor(w)
            attention_mask[i, : len(w)] = 1
        return input_ids, attention_mask

    def __call__(
        self,
        token_lists: list[list[str]] | list[tuple[str, ...]],
        tag_lists: list[tuple[str, ...]] | list[list[str]] | None = None,
        masked: list[list[bool]] | None = None,
        pieces: list[list[list[int]]] | None = None,
    ) -> Batch:
        """A batch; words flagged True in ``masked`` (one flag list per sentence) are read as
        the encoder's mask token with the padding word shape (the input-level views).
        ``pieces``: the sentences' :meth:`word_pieces`, when the caller has them already."""
        tok = self.tokenizer
        windows: list[list[int]] = []
        n_words = max((len(t) for t in token_lists), default=0)
        n_words = max(n_words, 1)
        size = (len(token_lists), n_words)
        word_window = torch.zeros(size, dtype=torch.long)
        word_position = torch.zeros(size, dtype=torch.long)
        word_mask = torch.zeros(size, dtype=torch.bool)
        shape_ids = torch.zeros(size, dtype=torch.long)
        tags = torch.full(size, IGNORE, dtype=torch.long) if tag_lists is not None else None
        if pieces is None:
            pieces = self.word_pieces(list(token_lists), masked)
        for b, word_ids in enumerate(pieces):
            plan = plan_windows(
                word_ids, self.max_pieces, self.stride, tok.cls_token_id, tok.sep_token_id
            )
            offset = len(windows)
            windows.extend(plan.windows)
            n = len(word_ids)
            word_window[b, :n] = torch.tensor(plan.word_window, dtype=torch.long) + offset
            word_position[b, :n] = torch.tensor(plan.word_position, dtype=torch.long)
            word_mask[b, :n] = True
            shapes = [word_shape(w) for w in token_lists[b]]
            if masked is not None:  # a masked word shows no shape either (0 = the zero vector)
                shapes = [0 if flag else sh for sh, flag in zip(shapes, masked[b], strict=True)]
            shape_ids[b, :n] = torch.tensor(shapes, dtype=torch.long)
            if tags is not None and tag_lists is not None:
                tags[b, :n] = self._tag_ids(tag_lists[b])
        input_ids, attention_mask = self._padded(windows)
        return Batch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            word_window=word_window,
            word_position=word_position,
            word_mask=word_mask,
            shape_ids=shape_ids,
            tags=tags,
            words=[tuple(t) for t in token_lists],
            tag_names=[tuple(t) for t in tag_lists] if tag_lists is not None else None,
        )


class Tagger(nn.Module):
    """Encoder + casing features + linear head over the BIO tags of one label set."""

    def __init__(
        self,
        config: CdlmConfig,
        labels: list[str],
        encoder: nn.Module,
        tokenizer: Any,
        encoder_name: str | None = None,
        *,
        graphs: LabelGraphs | None = None,
        source_head: torch.Tensor | None = None,
        swap_names: Mapping[str, Sequence[Mention]] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.labels = list(labels)
        self.encoder = encoder
        self.tokenizer = tokenizer
        # Original --encoder value (None = embedded MiniLM); recorded in checkpoints and results.
        self.encoder_name = encoder_name
        dim = encoder.config.hidden_size
        limit = getattr(encoder.config, "max_position_embeddings", None)
        if limit is not None and config.encoder.max_pieces > limit:
            raise ConfigError(
                f"encoder.max_pieces ({config.encoder.max_pieces}) exceeds the encoder's "
                f"{limit} positions"
            )
        self.casing = CasingFeatures(dim) if config.encoder.casing_features else None
        self.dropout = nn.Dropout(config.tagger.dropout)
        self.head = nn.Linear(dim, len(self.labels))
        # Plug-in modules (docs/DESIGN.md, "Label-structure fusion" and "Causal module"), built
        # from config switches.
        self.fusion: nn.Module | None = None
        self.causal: nn.Module | None = None
        self._build_plug_ins(dim, graphs, source_head, swap_names)
        self.builder = BatchBuilder(
            tokenizer, self.labels, config.encoder.max_pieces, config.encoder.stride
        )

    def _build_plug_ins(
        self,
        dim: int,
        graphs: LabelGraphs | None,
        source_head: torch.Tensor | None,
        swap_names: Mapping[str, Sequence[Mention]] | None,
    ) -> None:
        """The causal module and the fusion, each only where its switch is on, in this order
        (a seed then draws the same initial weights): the fusion from the label ``graphs`` and
        the source tagger's ``source_head`` rows (without graphs there is none: a checkpoint's
        is shaped by :meth:`load`); the swap view's entity base from ``swap_names``."""
        if self.config.causal.explicit or self.config.causal.implicit:
            from cdlm.model.causal import CausalModule

            self.causal = causal = CausalModule(dim, self.labels, self.config.causal)
            if swap_names is not None:
                causal.set_swap_names(swap_names, self.config.train.seed)
        if graphs is not None and self.config.fusion.enabled:
            from cdlm.model.fusion import build_fusion

            if source_head is None:
                raise ConfigError("fusion.enabled: label graphs need the source tagger's head")
            self.fusion = build_fusion(self.config, graphs, source_head, self.labels)

    @classmethod
    def create(
        cls,
        config: CdlmConfig,
        labels: list[str],
        *,
        swap_names: Mapping[str, Sequence[Mention]] | None = None,
    ) -> Tagger:
        """A fresh tagger on the pre-trained encoder named by ``config.encoder.name``."""
        encoder, tokenizer = load_pretrained(config.encoder.name)
        return cls(config, labels, encoder, tokenizer, config.encoder.name, swap_names=swap_names)

    @classmethod
    def from_source(
        cls,
        config: CdlmConfig,
        labels: list[str],
        source: Tagger | None,
        *,
        graphs: LabelGraphs | None = None,
        swap_names: Mapping[str, Sequence[Mention]] | None = None,
    ) -> Tagger:
        """A tagger for the target ``labels`` on top of a source tagger: a copy of its encoder
        and casing features (the pre-trained encoder when there is none), a fresh head, and
        the plug-ins its config switches on, the fusion from ``graphs`` and the source head."""
        if source is None:
            if graphs is not None and config.fusion.enabled:
                raise ConfigError("fusion.enabled: label graphs need a source model")
            return cls.create(config, labels, swap_names=swap_names)
        model = cls(
            config,
            labels,
            copy.deepcopy(source.encoder),
            source.tokenizer,
            source.encoder_name,
            graphs=graphs,
            source_head=source.head.weight,
            swap_names=swap_names,
        )
        if source.casing is not None and model.casing is not None:
            model.casing.load_state_dict(source.casing.state_dict())
        return model

    @property
    def hidden_size(self) -> int:
        return self.encoder.config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # --- the forward pass -------------------------------------------------------------------

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Word-level features ``h`` [B, W, d] (first sub-token, + casing) and the word mask."""
        hidden = self.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state
        h = hidden[batch.word_window, batch.word_position]
        if self.casing is not None:
            h = h + self.casing(batch.shape_ids)
        return h, batch.word_mask

    def forward(self, batch: Batch) -> TaggerOutput:
        h, mask = self.encode(batch)
        losses: dict[str, torch.Tensor] = {}
        if self.fusion is not None:
            h, extra = self.fusion(h, mask, batch)
            losses.update(extra)
        logits = self.head(self.dropout(h))
        if self.causal is not None:
            logits, extra = self.causal(h, mask, logits, batch, self.head, self.view_scores)
            losses.update(extra)
        loss = None
        if batch.tags is not None:
            ner = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch.tags.reshape(-1), ignore_index=IGNORE
            )
            losses = {"ner": ner, **losses}
            loss = torch.stack(list(losses.values())).sum()
        return TaggerOutput(logits=logits, loss=loss, losses=losses)

    @torch.no_grad()
    def init_label_rows(self, descriptions: dict[str, str], scale: float = 1.0) -> None:
        """Label semantics: the head rows of each type's B- and I- tags start as the encoder's
        mean-pooled encoding of ``"type: description"`` (the type name alone when it has
        none), centred over the types (the part they share says nothing about which type) and
        scaled to ``scale`` x the mean norm of the random rows they replace. ``O`` keeps its
        random row."""
        types = label_types(self.labels)
        texts = [
            f"{t}: {descriptions[t]}" if descriptions.get(t) else t.replace("_", " ") for t in types
        ]
        enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        was_training = self.encoder.training
        self.encoder.eval()
        hidden = self.encoder(**enc).last_hidden_state
        self.encoder.train(was_training)
        weights = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        pooled = pooled - pooled.mean(0, keepdim=True)
        pooled = pooled / pooled.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        rows = self.head.weight
        target_norm = scale * rows.norm(dim=-1).mean()
        for i, label in enumerate(self.labels):
            if label != "O":
                rows[i] = target_norm * pooled[types.index(label[2:])]

    def view_scores(
        self, token_lists: list[list[str]], masked: list[list[bool]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``[B, W, L]`` and word mask of one more pass over changed input (the causal
        module's views): encoder -> casing -> fusion (no extra losses) -> head."""
        batch = self.builder(token_lists, masked=masked).to(self.device)
        h, mask = self.encode(batch)
        if self.fusion is not None:
            h, _ = self.fusion(h, mask, None)
        return self.head(self.dropout(h)), mask

    # --- inference --------------------------------------------------------------------------

    @torch.inference_mode()
    def predict_proba(
        self,
        token_lists: list[list[str]] | list[tuple[str, ...]],
        batch_size: int | None = None,
        max_padding: float | None = None,
    ) -> list[np.ndarray]:
        """Softmax over the BIO labels for every word: one ``[W, L]`` array per sentence.
        Sentences are batched in order of their word-piece count (what the encoder pays for),
        so a batch pads little; ``max_padding`` bounds it (:mod:`cdlm.model.batching`)."""
        batch_size = batch_size or self.config.train.eval_batch_size
        was_training = self.training
        self.eval()
        out = [np.zeros((0, len(self.labels)), dtype=np.float32) for _ in token_lists]
        pieces = self.builder.word_pieces(list(token_lists))
        cost = [2 + sum(len(p) for p in words) for words in pieces]  # + [CLS], [SEP]
        order = sorted(
            (i for i in range(len(token_lists)) if len(token_lists[i])), key=cost.__getitem__
        )
        try:
            for idx in length_batches(order, cost, batch_size, max_padding):
                batch = self.builder(
                    [token_lists[i] for i in idx], pieces=[pieces[i] for i in idx]
                ).to(self.device)
                probs = self(batch).logits.float().softmax(-1).cpu().numpy()
                for row, i in enumerate(idx):
                    out[i] = probs[row, : len(token_lists[i])]
        finally:
            self.train(was_training)
        return out

    def predict_tags(
        self, token_lists: list[list[str]] | list[tuple[str, ...]], batch_size: int | None = None
    ) -> list[list[str]]:
        """IOB2 tags per word, decoded as ``tagger.decode`` says (valid IOB2 by default)."""
        method = self.config.tagger.decode
        return [decode(p, self.labels, method) for p in self.predict_proba(token_lists, batch_size)]

    # --- checkpoints ------------------------------------------------------------------------

    def save(self, directory: Path | str, extra: dict[str, Any] | None = None) -> Path:
        """Weights (``model.safetensors``), ``config.json`` (the model and training config,
        labels, encoder) and the encoder's tokenizer and architecture (``encoder/``), so the
        folder loads alone."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "labels": self.labels,
            "domain": self.config.train.target,
            **(extra or {}),
        }
        return save_checkpoint(directory, self, meta)

    @staticmethod
    def read_meta(
        directory: Path | str, formats: tuple[int, ...] = (CHECKPOINT_FORMAT,)
    ) -> dict[str, Any]:
        """The checkpoint's ``config.json``; a clear error when missing, unreadable or of
        another format than ``formats`` (1 = one tagger, 2 = a bundle of domain heads)."""
        path = Path(directory)
        meta_file = path / "config.json"
        if not meta_file.is_file():
            raise ModelNotFoundError(f"no checkpoint at {path} (no config.json); {HOW_TO_MAKE}")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelNotFoundError(
                f"{meta_file}: corrupt checkpoint ({exc}); {HOW_TO_MAKE}"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") not in formats:
            raise ModelNotFoundError(f"{meta_file}: not a cdlm checkpoint (format); {HOW_TO_MAKE}")
        return meta

    @classmethod
    def load(cls, directory: Path | str, device: str | torch.device = "cpu") -> Tagger:
        """Rebuild a tagger saved by :meth:`save` (no network access, no pre-trained weights)."""
        path = Path(directory)
        meta = cls.read_meta(path)
        config, labels = saved_config(path, meta), saved_labels(path, meta)
        encoder, tokenizer = load_saved_encoder(path)
        model = cls(config, labels, encoder, tokenizer, meta.get("encoder_name"))
        weights = path / "model.safetensors"
        if config.fusion.enabled and weights.is_file():  # shapes come from the saved graph buffers
            from safetensors import SafetensorError

            from cdlm.model.fusion import empty_for_checkpoint

            try:
                model.fusion = empty_for_checkpoint(weights, model.hidden_size, labels, config)
            except (SafetensorError, RuntimeError, OSError) as exc:
                raise _corrupt(weights, exc) from None
        load_weights(model, weights, device)
        return model


def _corrupt(path: Path, exc: Exception) -> ModelNotFoundError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(f"{path}: corrupt checkpoint ({first}); {HOW_TO_MAKE}")


def saved_config(path: Path, meta: dict[str, Any]) -> CdlmConfig:
    """The config saved in a checkpoint's ``config.json``: its model and training sections,
    runtime sections at their defaults (an older checkpoint's saved ones are ignored)."""
    try:
        return from_saved(meta["config"])
    except ValidationError as exc:  # e.g. written by a cdlm with other config fields
        where = one_line(exc, str(path / "config.json"))
        raise ModelNotFoundError(
            f"{where} (saved by another cdlm version?); {HOW_TO_MAKE}"
        ) from None
    except (KeyError, TypeError) as exc:
        raise _corrupt(path / "config.json", exc) from None


def saved_labels(path: Path, meta: dict[str, Any], key: str = "labels") -> list[str]:
    try:
        labels = meta[key]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError(f"'{key}' is not a list of tags")
        return list(labels)
    except (KeyError, TypeError) as exc:
        raise _corrupt(path / "config.json", exc) from None


def load_saved_encoder(path: Path) -> tuple[nn.Module, Any]:
    """The encoder architecture (random weights; the checkpoint's weights come next) and the
    tokenizer saved in ``path/encoder``."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        enc_config = AutoConfig.from_pretrained(str(path / "encoder"))
        tokenizer = AutoTokenizer.from_pretrained(str(path / "encoder"), use_fast=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelNotFoundError(
            f"{path / 'encoder'}: encoder files missing or corrupt ({first}); {HOW_TO_MAKE}"
        ) from None
    return AutoModel.from_config(enc_config), tokenizer


def save_checkpoint(directory: Path | str, model: nn.Module, meta: dict[str, Any]) -> Path:
    """A folder that loads alone: the weights (``model.safetensors``), the encoder's tokenizer
    and architecture (``encoder/``) and ``config.json`` (``meta`` plus the encoder and the model
    and training config: :meth:`~cdlm.config.CdlmConfig.saved_dump`, no runtime settings).
    ``model`` has ``encoder``, ``tokenizer``, ``encoder_name`` and ``config``."""
    from safetensors.torch import save_model

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path / "model.safetensors"))
    model.tokenizer.save_pretrained(str(path / "encoder"))
    model.encoder.config.save_pretrained(str(path / "encoder"))
    meta = {
        **meta,
        "encoder": encoder_label(model.encoder_name),
        "encoder_name": model.encoder_name,
        "config": model.config.saved_dump(),
    }
    write_json(path / "config.json", meta)
    return path


def load_weights(model: nn.Module, weights: Path, device: str | torch.device = "cpu") -> None:
    """``model.safetensors`` into ``model`` (strict: every tensor must match), then eval mode on
    ``device``; a missing or corrupt file is a one-line error. Packed weights (the
    shipped default model, :mod:`cdlm.model.packing`) are unpacked to fp32 first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from cdlm.model.packing import PACKED, load_packed, packing_of

    if not weights.is_file():
        raise ModelNotFoundError(f"{weights}: weights missing; {HOW_TO_MAKE}")
    try:
        if packing_of(weights) == PACKED:
            model.load_state_dict(load_packed(weights), strict=True)
        else:
            load_model(model, str(weights), device=str(device))
    except (SafetensorError, RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelNotFoundError(f"{weights}: corrupt weights ({first}); {HOW_TO_MAKE}") from None
    model.eval()
    model.to(device)
