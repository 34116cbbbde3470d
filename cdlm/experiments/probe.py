"""Counterfactual entity-bias probe: does the predicted type survive a change of name?

For every entity the tagger predicts, two counterfactual sentences are built, each changing
only that entity (one sentence per entity, so other names cannot leak in):

- **swap**: the name is replaced by a name of the same type drawn from the *other* CrossNER
  domains' train sets, e.g. a politics ``person`` becomes a science ``person``. The
  checkpoint's source domain (conll2003) is left out: the tagger was pre-trained on those
  names, so swapping them in would reward exactly the memorisation the probe measures. Types
  that no other domain has (``politician``, ``band``...) fall back to names of that type from
  the probed data's *other* sentences (gold spans; dev/test names the tagger never trained on);
  the results file lists which types used which pool. An entity with no usable name at all is
  counted as ``skipped``.
- **placeholder**: the name is replaced by a neutral stand-in. ``nonce`` (default) keeps the
  casing pattern, digits-vs-letters and punctuation of every word (``McDonald's`` ->
  ``KaLomuve's``), so the word-shape features still say "a name is here" but nothing about
  *which* name; ``mask`` writes the literal ``[ENT]`` for every word of the span.

The tagger re-tags each counterfactual sentence; the entity *survives* when the tagger predicts
exactly the replaced span with the original type (strict, like seqeval). Other outcomes are
counted too: ``other_type`` (same span, another type), ``boundary`` (an overlapping span of
another extent) and ``missed`` (no overlapping span). A model that reads the context keeps the
type when the name changes; a model that memorised names does not. Rates are reported overall
and per (originally predicted) type. Draws are seeded (``causal.probe_seed``) per entity.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from cdlm.augment.entity import EntityBase, mentions_by_type, replace_span
from cdlm.data.bio import Sentence
from cdlm.data.spans import bio_spans, span_tags
from cdlm.errors import DataError
from cdlm.results import RESULTS_DIR, write_results

if TYPE_CHECKING:
    from cdlm.model.tagger import Tagger

OUTCOMES = ("survived", "other_type", "boundary", "missed")
MASK_TOKEN = "[ENT]"
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

Name = tuple[str, ...]


@dataclass(frozen=True)
class Counterfactual:
    """One changed sentence: entity ``index`` of sentence ``sentence`` now spans
    ``[start, end)`` in ``changed``; ``tags`` are the original predicted tags moved along."""

    sentence: int
    label: str
    original: Name
    replacement: Name
    start: int
    end: int
    changed: Sentence


# --- names to swap in ---------------------------------------------------------------------------


@dataclass
class NamePools:
    """Replacement names per type: ``other`` from other domains' train sets, ``same`` (sentence
    index, name) from the probed data itself, for types no other domain has."""

    other: EntityBase
    same: dict[str, list[tuple[int, Name]]]

    def pool(self, label: str) -> str:
        if self.other.mentions.get(label):
            return "other domains"
        return "same domain (other sentences)" if self.same.get(label) else "none"

    def draw(self, label: str, original: Name, sentence: int, rng: random.Random) -> Name | None:
        """A name of ``label`` that differs from ``original`` (ignoring case) and, for the
        same-domain pool, comes from another sentence; None when there is none."""
        if self.other.mentions.get(label):
            names = self.other.alternatives(label, original, ignore_case=True)
        else:
            taken = " ".join(original).lower()
            names = tuple(
                n
                for i, n in self.same.get(label, [])
                if i != sentence and " ".join(n).lower() != taken
            )
        return rng.choice(names) if names else None


def build_entity_base(
    probed: Sequence[Sentence],
    exclude: Sequence[str | None],
    data_dir: Path | str | None = None,
) -> NamePools:
    """Names from the train split of every CrossNER domain not in ``exclude`` (the probed
    domain and the tagger's source domain), in first-seen order, plus the probed sentences'
    own gold names (used only for types no other domain has)."""
    from cdlm.data.registry import DOMAINS, find_data_dir, load_split

    folder = find_data_dir(data_dir)
    other: dict[str, dict[Name, None]] = defaultdict(dict)
    for domain in DOMAINS:
        if domain in exclude or not (folder / domain / "train.txt").is_file():
            continue
        for label, names in mentions_by_type(load_split(domain, "train", folder)).items():
            other[label].update(dict.fromkeys(names))
    same: dict[str, list[tuple[int, Name]]] = defaultdict(list)
    for i, sent in enumerate(probed):
        for start, end, label in bio_spans(sent.tags):
            same[label].append((i, sent.tokens[start:end]))
    return NamePools(EntityBase({k: tuple(v) for k, v in other.items()}), dict(same))


# --- placeholders ---------------------------------------------------------------------------------


def nonce_word(word: str, rng: random.Random) -> str:
    """A made-up word with ``word``'s shape: letters become alternating consonant/vowel letters
    with the same case, digits become random digits, everything else is kept."""
    out: list[str] = []
    k = rng.randrange(2)
    for ch in word:
        if ch.isalpha():
            letter = rng.choice(_VOWELS if k % 2 else _CONSONANTS)
            k += 1
            out.append(letter.upper() if ch.isupper() else letter)
        elif ch.isdigit():
            out.append(str(rng.randrange(10)))
        else:
            out.append(ch)
    nonce = "".join(out)
    return nonce if nonce != word else nonce + "a"


def placeholder(name: Name, mode: Literal["nonce", "mask"], rng: random.Random) -> Name:
    if mode == "mask":
        return tuple(MASK_TOKEN for _ in name)
    return tuple(nonce_word(w, rng) for w in name)


# --- counterfactual sentences -------------------------------------------------------------------


def canonical_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """``tags`` rewritten from their strict spans: valid IOB2 even from an argmax decoder (a
    stray ``I-X`` is no entity, as seqeval's strict mode scores it, so it becomes ``O``)."""
    return tuple(span_tags(len(tags), bio_spans(tags)))


def counterfactuals(
    sentences: Sequence[Sentence],
    predicted: Sequence[Sequence[str]],
    base: NamePools,
    mode: Literal["swap", "nonce", "mask"],
    seed: int,
) -> tuple[list[Counterfactual], Counter[str]]:
    """One changed sentence per predicted entity; also the per-type count of entities skipped
    because no replacement name exists (only possible in ``swap`` mode)."""
    out: list[Counterfactual] = []
    skipped: Counter[str] = Counter()
    for i, (sent, raw_tags) in enumerate(zip(sentences, predicted, strict=True)):
        tags = canonical_tags(raw_tags)  # valid IOB2 even from an argmax decoder
        for start, end, label in bio_spans(tags):
            rng = random.Random(f"{seed}:{mode}:{i}:{start}")
            name = sent.tokens[start:end]
            new = base.draw(label, name, i, rng) if mode == "swap" else placeholder(name, mode, rng)
            if new is None:
                skipped[label] += 1
                continue
            original = Sentence(sent.tokens, tags, source=sent.source, line=sent.line)
            changed = replace_span(original, start, end, new, label)
            out.append(Counterfactual(i, label, name, new, start, start + len(new), changed))
    return out, skipped


def outcome(cf: Counterfactual, tags: Sequence[str]) -> str:
    """How the tagger's tags for the changed sentence treat the replaced span."""
    spans = bio_spans(tags)
    if (cf.start, cf.end, cf.label) in spans:
        return "survived"
    if any((s, e) == (cf.start, cf.end) for s, e, _ in spans):
        return "other_type"
    if any(s < cf.end and cf.start < e for s, e, _ in spans):
        return "boundary"
    return "missed"


# --- results ------------------------------------------------------------------------------------


class Survival(BaseModel):
    """Outcome counts for a set of replaced entities; ``rate`` = survived / entities."""

    entities: int
    rate: float | None  # None when there were no entities to replace
    counts: dict[str, int]
    skipped: int = 0  # entities with no replacement name (not in ``entities``)
    pool: str | None = None  # per type, swap mode: where the replacement names came from


class ProbeMode(BaseModel):
    overall: Survival
    per_type: dict[str, Survival]
    examples: list[dict[str, Any]]


class ProbeResult(BaseModel):
    domain: str
    variant: str
    input: str
    checkpoint: str
    sentences: int
    predicted_entities: int
    placeholder: str
    seed: int
    modes: dict[str, ProbeMode]  # "swap" and the placeholder mode
    config: dict[str, Any]
    provenance: dict[str, Any]


def _survival(outcomes: Sequence[str], skipped: int = 0, pool: str | None = None) -> Survival:
    counts = Counter(outcomes)
    n = len(outcomes)
    return Survival(
        entities=n,
        rate=counts["survived"] / n if n else None,
        counts={k: counts[k] for k in OUTCOMES},
        skipped=skipped,
        pool=pool,
    )


def summarise_probe(
    cfs: Sequence[Counterfactual],
    retagged: Sequence[Sequence[str]],
    skipped: Counter[str],
    base: NamePools | None,
    n_examples: int = 5,
) -> ProbeMode:
    results = [outcome(cf, tags) for cf, tags in zip(cfs, retagged, strict=True)]
    by_type: dict[str, list[str]] = defaultdict(list)
    for cf, res in zip(cfs, results, strict=True):
        by_type[cf.label].append(res)
    labels = sorted(set(by_type) | set(skipped))
    per_type = {
        label: _survival(by_type[label], skipped[label], base.pool(label) if base else None)
        for label in labels
    }
    examples = [
        {
            "original": " ".join(cf.original),
            "replacement": " ".join(cf.replacement),
            "type": cf.label,
            "sentence": " ".join(cf.changed.tokens),
            "outcome": res,
        }
        for cf, res in list(zip(cfs, results, strict=True))[:n_examples]
    ]
    return ProbeMode(
        overall=_survival(results, sum(skipped.values())), per_type=per_type, examples=examples
    )


def run_probe(
    model: Tagger,
    sentences: Sequence[Sentence],
    own_domain: str | None,
    data_dir: Path | str | None = None,
    placeholder_mode: Literal["nonce", "mask"] | None = None,
    seed: int | None = None,
) -> tuple[int, dict[str, ProbeMode]]:
    """Tag ``sentences``, build both kinds of counterfactuals, re-tag them and summarise.
    Returns the number of predicted entities and one :class:`ProbeMode` per mode."""
    cfg = model.config.causal
    placeholder_mode = placeholder_mode or cfg.probe_placeholder
    seed = cfg.probe_seed if seed is None else seed
    predicted = model.predict_tags([s.tokens for s in sentences])
    n_entities = sum(len(bio_spans(tags)) for tags in predicted)
    base = build_entity_base(sentences, [own_domain, model.config.train.source], data_dir)
    modes: dict[str, ProbeMode] = {}
    for mode in ("swap", placeholder_mode):
        cfs, skipped = counterfactuals(sentences, predicted, base, mode, seed)
        retagged = model.predict_tags([cf.changed.tokens for cf in cfs]) if cfs else []
        modes[mode] = summarise_probe(cfs, retagged, skipped, base if mode == "swap" else None)
    return n_entities, modes


def resolve_input(spec: str, data_dir: Path | str | None) -> tuple[list[Sentence], str, str | None]:
    """``spec`` is a BIO file, or ``DOMAIN`` / ``DOMAIN/SPLIT`` / ``DOMAIN:SPLIT`` (default split
    ``test``). Returns (sentences, display name, CrossNER domain or None)."""
    from cdlm.data.bio import read_bio
    from cdlm.data.registry import DOMAINS, load_split

    path = Path(spec).expanduser()
    if path.is_file():
        return read_bio(path), path.stem, None
    domain, _, split = spec.replace(":", "/").partition("/")
    if domain in DOMAINS:
        return load_split(domain, split or "test", data_dir), domain, domain
    raise DataError(
        f"--input {spec!r}: not a file, and not DOMAIN[/SPLIT] with DOMAIN one of "
        f"{', '.join(DOMAINS)}"
    )


def write_probe(result: ProbeResult, path: Path | None = None) -> Path:
    return write_results(
        path or RESULTS_DIR / f"probe__{result.domain}__{result.variant}.json", result
    )
