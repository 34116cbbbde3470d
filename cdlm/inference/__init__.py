"""Applications floor: the cdlm model object and raw-text prediction.

``model`` (:class:`~cdlm.inference.model.CDLM`: taggers per domain + router + LLM stages; what
``cdlm predict``, ``cdlm.predict`` and checkpoint evaluation are thin layers over), ``tagging``
(tokenise, tag, decode, candidates and entities with character offsets) and ``predict``
(``cdlm.predict`` and the LLM-only mode). Nothing is imported here, so importing is free.
"""
