"""Variant names and the names of the runs they train (what ``cdlm train`` builds its config
with).

A named variant (:data:`cdlm.config.VARIANTS`) switches its modules on or off; any other name
only labels the run. A module switched off on top of the variant (``--set
causal.explicit=false``) and FactMix rename the run, so it never overwrites the checkpoint or
the results of the variant it came from: ``full`` without the explicit counterfactual trains
as ``full-no-ecf``, ``gcn`` with FactMix as ``gcn+factmix``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdlm.config import VARIANTS, CdlmConfig, load_config

# A module that can be switched off on top of a variant, and what that adds to the run's name.
ABLATIONS: dict[str, str] = {
    "causal.explicit": "-no-ecf",
    "causal.implicit": "-no-icf",
    "fusion.enabled": "-no-gcn",
}
FACTMIX = "+factmix"


def _value(config: CdlmConfig, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(config, section), name)


def run_variant(preset: CdlmConfig, config: CdlmConfig) -> str:
    """The variant name a run of ``config`` is saved and reported under: its
    ``train.variant``, plus a suffix for each module (:data:`ABLATIONS`) on in ``preset`` (the
    config the variant alone gives) and off in ``config``, plus ``+factmix`` when FactMix is on
    and the name does not say so yet."""
    name = config.train.variant
    for key, suffix in ABLATIONS.items():
        if _value(preset, key) and not _value(config, key):
            name += suffix
    if config.augment.method == "factmix" and FACTMIX not in name:
        name += FACTMIX
    return name


def variant_config(
    path: Path | None,
    variant: str | None,
    options: dict[str, Any],
    sets: dict[str, Any] | None = None,
) -> CdlmConfig:
    """The config of a ``cdlm train`` run: the TOML file at ``path`` (or none), the switches of
    ``variant`` (a name in :data:`~cdlm.config.VARIANTS`; another name only labels the run),
    the command's dotted ``options`` (``None`` keeps a value) and then the user's ``sets`` on
    top. Its ``train.variant`` is the run's name (:func:`run_variant`)."""
    given = {k: v for k, v in options.items() if v is not None}  # unset: the variant's value
    base = {**VARIANTS.get(variant or "", {}), "train.variant": variant, **given}
    preset = load_config(path, base)
    config = load_config(path, {**base, **(sets or {})})
    config.train.variant = run_variant(preset, config)
    return config
