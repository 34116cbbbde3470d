"""Applications floor: training and measuring taggers and the tagger + LLM pipeline.

``train`` (source pre-training, target fine-tuning), ``factmix`` (FactMix inside training),
``evaluate`` (a checkpoint on a split), ``suite`` (variants x domains x seeds), ``debias``
(``causal.alpha`` on dev), ``probe`` (counterfactual entity-bias probe) and ``llm_eval`` (tagger
vs tagger + LLM: routing, cost, changed decisions). Nothing is imported here.
"""
