"""FactMix augmentation (Yang et al., COLING 2022) of the few target-domain training sentences.

Data flow: original sentences -> :mod:`entity` (entity-level semi-facts: one entity span swapped
for another of the same type) and :mod:`context` (context-level semi-facts: one or two O words
re-filled by a masked-LM-like filler) -> :mod:`filter` (keep a sentence only if the tagger trained
on the original data tags every token right) -> :mod:`mix` (originals + the first r of each kind
per original; r chosen by grid search on target dev). :mod:`record` holds what every generated
sentence carries for the sidecar JSONL. Nothing runs at import.
"""
