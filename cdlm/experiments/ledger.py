"""A suite's run ledger: one small JSON file per finished run, meant to be committed.

Checkpoints live in a runs folder that a fresh machine does not have, and a suite such as the
final CrossNER table takes longer than one machine lives. The ledger keeps what the results need
from each run (scores, chosen epoch and alpha, FactMix grid, the per-sentence test counts the
intervals need, the entity-bias probe) beside the results file, so a suite started on another
machine goes on where the last one stopped instead of training every run again.

A record is used only while the run's training config hashes the same
(:func:`cdlm.runs.config_hash`): change a default that shapes a run and the run is trained anew.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from cdlm.config import one_line
from cdlm.errors import DataError
from cdlm.results import portable, write_json


class ProbeSummary(BaseModel):
    """Type survival of a run's predicted entities (:mod:`cdlm.experiments.probe`)."""

    split: str
    sentences: int
    entities: int
    # Mode ("swap" and the placeholder mode, e.g. "nonce") -> share of entities whose type
    # survived the replacement; None when nothing was replaced.
    survival: dict[str, float | None]


class RunRecord(BaseModel):
    variant: str
    domain: str
    seed: int
    checkpoint: str
    reused: bool
    dev_f1: float
    test_f1: float
    test_precision: float
    test_recall: float
    best_epoch: int | None = None
    epochs_run: int | None = None  # target epochs trained (best == run: stopped at the cap)
    target_seconds: float | None = None
    # `+factmix` variants: chosen ratios, grid dev F1, generated/kept counts (scores.json).
    augment: dict[str, Any] | None = None
    # Debiasing strength chosen on dev (variants with the explicit counterfactual), else None.
    alpha: float | None = None
    # The suite's entity-bias probe of this run, for the variants and seeds it names.
    probe: ProbeSummary | None = None
    # Per test sentence (correct, predicted, gold) spans from scores.json, for the paired
    # bootstrap intervals; kept in the ledger, not written into the results file.
    test_counts: list[tuple[int, int, int]] | None = Field(None, exclude=True)


class LedgerEntry(BaseModel):
    config_hash: str
    record: RunRecord
    test_counts: list[tuple[int, int, int]] | None = None
    provenance: dict[str, Any]


def entry_path(ledger: Path, variant: str, domain: str, seed: int) -> Path:
    return ledger / f"{domain}__{variant}__seed{seed}.json"


def read_entry(ledger: Path, variant: str, domain: str, seed: int) -> LedgerEntry | None:
    """The ledger's entry for this run, or None when there is none. A file that cannot be read
    is an error naming it: a committed ledger that is broken must not be silently re-trained."""
    path = entry_path(ledger, variant, domain, seed)
    if not path.is_file():
        return None
    try:
        return LedgerEntry.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise DataError(f"not a run ledger entry: {one_line(exc, str(path))}") from None
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise DataError(f"{path}: not a run ledger entry ({first})") from None


def recorded_run(
    ledger: Path, variant: str, domain: str, seed: int, config_hash: str
) -> RunRecord | None:
    """The recorded run when its config hashes as today's (``reused`` set), else None."""
    entry = read_entry(ledger, variant, domain, seed)
    if entry is None or entry.config_hash != config_hash:
        return None
    return entry.record.model_copy(update={"reused": True, "test_counts": entry.test_counts})


def write_entry(ledger: Path, record: RunRecord, config_hash: str, provenance: dict) -> Path:
    """Record a finished run (atomically; one line, since the counts run to thousands)."""
    path = entry_path(ledger, record.variant, record.domain, record.seed)
    entry = LedgerEntry(
        config_hash=config_hash,
        record=record,
        test_counts=record.test_counts,
        provenance=provenance,
    )
    write_json(path, portable(entry.model_dump(mode="json")), indent=None)
    return path
