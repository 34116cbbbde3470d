"""Per-stage usage accounting: what the LLM part of a run cost and how often it failed.

Thread-safe, because ``complete_many`` finishes requests on worker threads. A backend keeps one
log (``backend.usage``) that records every request it serves; callers may keep their own too.
Fallbacks (the caller kept the tagger's answer because the LLM gave none) are counted by the
caller with :meth:`UsageLog.add_fallback`, so a silently dropped answer shows up in the report.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from pydantic import BaseModel

from cdlm.llm.base import Usage


class StageSummary(BaseModel):
    requests: int = 0  # complete() calls, served from the cache or not
    calls: int = 0  # backend round trips actually made (retries included)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0  # transport retries + repair retries
    failures: int = 0  # requests that ended in LLMOutputError
    fallbacks: int = 0  # failures the caller resolved by keeping the tagger's answer
    overflows: int = 0  # of those fallbacks: prompts that did not fit the context window


class UsageLog:
    """Sums :class:`Usage` records per stage."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, StageSummary] = defaultdict(StageSummary)

    def add(self, usage: Usage, *, failed: bool = False) -> None:
        with self._lock:
            s = self._stages[usage.stage or "default"]
            s.requests += 1
            s.calls += usage.calls
            s.prompt_tokens += usage.prompt_tokens
            s.completion_tokens += usage.completion_tokens
            s.seconds += usage.seconds
            s.cache_hits += int(usage.cache_hit)
            s.cache_misses += int(not usage.cache_hit)
            s.retries += usage.retries
            s.failures += int(failed)

    def add_fallback(self, stage: str, n: int = 1, *, overflow: bool = False) -> None:
        with self._lock:
            s = self._stages[stage or "default"]
            s.fallbacks += n
            s.overflows += n if overflow else 0

    def summary(self) -> dict[str, StageSummary]:
        """Per-stage totals plus a ``"total"`` row."""
        with self._lock:
            stages = {k: v.model_copy() for k, v in sorted(self._stages.items())}
        total = StageSummary()
        for s in stages.values():
            for field in StageSummary.model_fields:
                setattr(total, field, getattr(total, field) + getattr(s, field))
        stages["total"] = total
        return stages

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        """JSON-ready summary for results files."""
        return {k: v.model_dump() for k, v in self.summary().items()}
