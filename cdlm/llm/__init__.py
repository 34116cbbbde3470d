"""LLM backends behind one small interface (docs/DESIGN.md, "LLM reasoning").

``factory.make_backend(cfg.llm)`` gives a ``llama`` (llama.cpp, any GGUF) or ``gpt`` (OpenAI
API or a compatible server) backend; ``backend.complete(messages, Schema, stage=...)`` returns a
validated ``Schema`` instance plus a ``Usage`` record. Modules: ``base`` (interface),
``structured`` (the shared cache/validate/repair loop), ``llama``/``gpt`` (engines), ``schema``
(bounded JSON schemas), ``cache`` (persistent answers), ``usage`` (per-stage totals),
``embedded`` (the demo SmolLM2 GGUF). Nothing is imported here, so importing is free.
"""
