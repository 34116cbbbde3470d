"""Applications floor: tagging raw text with a trained tagger, alone or with the LLM stages.

``tagging`` (tokenise, tag, decode, entities with character offsets) and ``predict`` (the
user-facing ``predict_texts`` behind ``cdlm.predict`` and ``cdlm predict``, and the tagger + LLM
pipeline ``predict_with_llm``). Nothing is imported here, so importing is free.
"""
