"""Top floor: the spaCy pipeline component ``cdlm`` (``nlp.add_pipe("cdlm")``).

Registered through the ``spacy_factories`` entry point (see ``pyproject.toml``), so spaCy finds
it without importing cdlm first. Needs the ``spacy`` extra: ``pip install 'cdlm[spacy]'``.
Nothing is imported here: ``cdlm.spacy.component`` imports spaCy.
"""
