"""Scoring the tagger + LLM pipeline: calibrated routing, the naive route-everything pipeline,
cost per sentence and how many tagger decisions the LLM changed.

``llm_eval`` is what ``cdlm eval llm ...`` and ``evals/bench_reasoning.py`` run. On seeded
subsets of dev and test it compares side by side, in one run:
- ``tagger``: the tagger alone;
- ``routed``: the threshold calibrated on dev (or the configured router without ``--calibrate``);
- ``naive``: every sentence with a candidate, every candidate, to the LLM (on a smaller subset,
  because it costs about eight calls per sentence), then the same again with a fresh task on the
  warm cache, for the cached/first wall-time ratio.

Every pass goes through the object users call: the subsets are tagged once
(:meth:`CDLM.tagged_tokens`) and each pass reasons over them with :meth:`CDLM.reason`, the steps
of ``CDLM.stream_tokens``. Each pass gets a fresh task (its own usage log, so its cost is its
own), all around one LLM backend per run (a GGUF loads once).

Calibration runs the LLM once on the dev sentences routed at the largest share tried and reuses
each candidate's decision at the smaller shares (their hard candidates are a subset); the batch a
candidate was asked in is therefore larger during calibration than at test time.

A changed decision is *better* when the LLM's answer for a candidate equals the gold one (the
gold type of exactly that span, or "none") and the tagger's did not, *worse* in the reverse case.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cdlm.config import CdlmConfig
from cdlm.data.bio import Sentence
from cdlm.data.spans import bio_spans, span_tags
from cdlm.errors import ConfigError
from cdlm.inference.model import CDLM, Reasoned
from cdlm.inference.tagging import TaggedText
from cdlm.llm.usage import UsageLog
from cdlm.metrics import SpanScores, span_scores
from cdlm.reasoning.candidates import Candidate, Doc
from cdlm.reasoning.pipeline import Outcome
from cdlm.reasoning.routing import CalibrationPoint, Router, calibrate, difficulty
from cdlm.reasoning.stage import Task
from cdlm.reasoning.stages import make_task
from cdlm.results import write_results

if TYPE_CHECKING:
    from cdlm.llm.base import LLMBackend
    from cdlm.model.tagger import Tagger


@dataclass
class View:
    """One gold sentence as a model tagged it, with that model and head (they reason on it)."""

    model: CDLM
    head: str
    tagged: TaggedText
    gold: tuple[str, ...]
    cands: list[Candidate]  # as CDLM.reason finds them (the model's reasoning settings)

    @property
    def doc(self) -> Doc:
        return self.tagged.doc

    @property
    def tags(self) -> list[str]:
        return self.tagged.tags


def tagger_views(
    model: CDLM | Tagger, sentences: Sequence[Sentence], cfg: CdlmConfig, head: str | None = None
) -> list[View]:
    """Tag ``sentences`` once (:meth:`CDLM.tagged_tokens`, the tagging of ``stream_tokens``); a
    bare tagger is wrapped with ``cfg``. Calibration reads the candidates before any pass."""
    m = model if isinstance(model, CDLM) else CDLM.from_tagger(model, config=cfg)
    name = m.resolve(head)
    r = m.config.reasoning
    tagged = m.tagged_tokens([s.tokens for s in sentences], name)
    return [
        View(m, name, t, s.tags, t.candidates(r.top_k, r.missed_o_max))
        for s, t in zip(sentences, tagged, strict=True)
    ]


def outcome_tags(view: View, outcome: Outcome) -> list[str]:
    return span_tags(
        len(view.doc.tokens), [(e.word_start, e.word_end, e.label) for e in outcome.entities]
    )


class RunStats(BaseModel):
    """Cost and effect of one pipeline run over a set of sentences."""

    sentences: int
    routed: int
    routed_share: float
    asked_candidates: int
    wall_seconds: float
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cache_hits: int
    calls_per_sentence: float
    tokens_per_sentence: float
    seconds_per_sentence: float
    fallbacks: int  # stage calls whose answer was unusable; the tagger's answer was kept
    dropped_ungrounded: int  # LLM phrases not found in the sentence, dropped
    changed: int
    changed_better: int
    changed_worse: int
    usage: dict[str, dict[str, float | int]]


def stats_from_totals(**totals: Any) -> RunStats:
    """A :class:`RunStats` from its totals; the shares and per-sentence figures derived here."""
    n = max(totals["sentences"], 1)
    return RunStats(
        **totals,
        routed_share=totals["routed"] / n,
        calls_per_sentence=totals["calls"] / n,
        tokens_per_sentence=(totals["prompt_tokens"] + totals["completion_tokens"]) / n,
        seconds_per_sentence=totals["wall_seconds"] / n,
    )


def gold_decision(view: View, cand: Candidate) -> str | None:
    gold = {(s, e): t for s, e, t in bio_spans(view.gold)}
    return gold.get((cand.start, cand.end))


def run_pipeline(
    task: Task, router: Router, views: Sequence[View], label: str = "LLM"
) -> tuple[list[Outcome], RunStats]:
    """Route and reason over ``views`` as one batch through their model (:meth:`CDLM.reason`);
    outcomes plus the pass's cost (``task``'s usage log) and changes."""
    from rich.progress import Progress

    done: list[Reasoned] = []
    start = time.perf_counter()
    if views:
        m, head = views[0].model, views[0].head
        passes = m.reason([v.tagged for v in views], head, llm=task, route=router)
        with Progress(transient=True) as progress:
            bar = progress.add_task(label, total=len(views))
            for result in passes:
                done.append(result)
                progress.advance(bar)
    wall = time.perf_counter() - start
    return [r.outcome for r in done], pass_stats(task.log, views, done, wall)


def changed_decisions(views: Sequence[View], outcomes: Sequence[Outcome]) -> tuple[int, int, int]:
    """How many tagger decisions the LLM changed, and how many of them for better and worse."""
    better = worse = changed = 0
    for view, out in zip(views, outcomes, strict=True):
        for cand, before, after in out.changes:
            if before == after:
                continue
            changed += 1
            gold = gold_decision(view, cand)
            better += int(after == gold and before != gold)
            worse += int(before == gold and after != gold)
    return changed, better, worse


def pass_stats(
    log: UsageLog, views: Sequence[View], done: Sequence[Reasoned], wall: float
) -> RunStats:
    """The :class:`RunStats` of one pass from its results and its task's usage log."""
    outcomes = [r.outcome for r in done]
    changed, better, worse = changed_decisions(views, outcomes)
    total = log.summary()["total"]
    return stats_from_totals(
        sentences=len(views),
        routed=sum(1 for r in done if r.hard),
        asked_candidates=sum(len(r.hard) for r in done),
        wall_seconds=round(wall, 3),
        calls=total.calls,
        prompt_tokens=total.prompt_tokens,
        completion_tokens=total.completion_tokens,
        cache_hits=total.cache_hits,
        fallbacks=sum(o.fallbacks for o in outcomes),
        dropped_ungrounded=sum(o.dropped for o in outcomes),
        changed=changed,
        changed_better=better,
        changed_worse=worse,
        usage=log.as_dict(),
    )


def score(views: Sequence[View], outcomes: Sequence[Outcome]) -> SpanScores:
    return span_scores(
        [v.gold for v in views], [outcome_tags(v, o) for v, o in zip(views, outcomes, strict=True)]
    )


def calibrate_on_dev(
    task: Task, views: Sequence[View], shares: Sequence[float], min_gain: float = 0.0
) -> tuple[CalibrationPoint, list[CalibrationPoint], RunStats]:
    """Pick the routing threshold with the best dev F1 (see the module docstring)."""
    from cdlm.reasoning.routing import share_threshold

    diffs = [difficulty(v.cands) for v in views]
    top = share_threshold(diffs, max([0.0, *shares]))
    outcomes, stats = run_pipeline(task, Router(threshold=top), views, "calibrating on dev")
    decided = [{c.id: after for c, _, after in o.changes} for o in outcomes]

    def f1_at(threshold: float) -> tuple[float, int]:
        pred, routed = [], 0
        for view, llm in zip(views, decided, strict=True):
            spans, asked = [], False
            for c in view.cands:
                if c.confidence < threshold and c.id in llm:
                    asked = True
                    if llm[c.id]:
                        spans.append((c.start, c.end, llm[c.id]))
                elif c.kind == "span" and c.tagger_type:
                    spans.append((c.start, c.end, c.tagger_type))
            routed += int(any(c.confidence < threshold for c in view.cands) or asked)
            pred.append(span_tags(len(view.doc.tokens), spans))
        return span_scores([v.gold for v in views], pred).f1, routed

    best, points = calibrate(diffs, shares, f1_at, min_gain)
    return best, points, stats


def seeded_subset(sentences: list[Sentence], n: int | None, seed: int) -> list[Sentence]:
    """``n`` sentences drawn with ``seed`` (kept in file order); all when ``n`` is None/larger."""
    if n is None or n >= len(sentences):
        return list(sentences)
    keep = sorted(random.Random(seed).sample(range(len(sentences)), n))
    return [sentences[i] for i in keep]


class LLMEvalResult(BaseModel):
    domain: str
    checkpoint: str
    backend: str
    model: str
    seed: int
    test_sentences: int
    dev_sentences: int = 0
    naive_sentences: int
    naive_start: int = 0  # the naive pipeline ran on test subset sentences [start, start + n)
    tagger: SpanScores
    routed: SpanScores
    routed_stats: RunStats
    threshold: float
    calibration: list[dict[str, float | int]] | None = None
    calibration_stats: RunStats | None = None
    naive_tagger: SpanScores | None = None
    naive: SpanScores | None = None
    naive_stats: RunStats | None = None
    naive_cached_stats: RunStats | None = None
    cached_wall_ratio: float | None = None
    # Per-sentence tags of the naive range, so ranges run separately merge into exact scores.
    naive_gold_tags: list[list[str]] | None = None
    naive_tags: list[list[str]] | None = None
    naive_tagger_tags: list[list[str]] | None = None
    config: dict[str, Any]
    provenance: dict[str, Any]


def task_maker(cfg: CdlmConfig, domain: str, types: list[str]) -> Callable[[], Task]:
    """Fresh tasks, one per pass (its own usage log and memo: each pass's cost is its own),
    around one backend: the first task builds it after checking the prompts, the others reuse it
    (a GGUF loads once per run)."""
    shared: list[LLMBackend] = []

    def new_task() -> Task:
        task = make_task(cfg, domain, types, backend=shared[0] if shared else None)
        shared[:] = [task.backend]
        return task

    return new_task


def calibrated_router(
    task: Task, views: Sequence[View], cfg: CdlmConfig
) -> tuple[Router, dict[str, Any]]:
    """The router at the threshold with the best dev F1, and the result's calibration fields."""
    routing = cfg.routing
    best, points, stats = calibrate_on_dev(
        task, views, routing.calibration_shares, routing.calibration_min_gain
    )
    calibration = [
        {"share": p.share, "threshold": p.threshold, "routed": p.routed, "dev_f1": p.f1}
        for p in points
    ]
    fields = {"dev_sentences": len(views), "calibration": calibration, "calibration_stats": stats}
    return Router(threshold=best.threshold, margin=0.0, budget=routing.budget), fields


def naive_passes(new_task: Callable[[], Task], views: Sequence[View]) -> dict[str, Any]:
    """Every candidate of ``views`` to the LLM, then again with a fresh task on the warm cache;
    the result's naive fields (per-sentence tags included, for merging ranges)."""
    gold = [list(v.gold) for v in views]
    tagger_tags = [list(v.tags) for v in views]
    outs, first = run_pipeline(new_task(), Router(threshold=1.0), views, "naive")
    tags = [outcome_tags(v, o) for v, o in zip(views, outs, strict=True)]
    _, cached = run_pipeline(new_task(), Router(threshold=1.0), views, "naive (cached)")
    ratio = cached.wall_seconds / first.wall_seconds if first.wall_seconds > 0 else None
    return {
        "naive_tagger": span_scores(gold, tagger_tags),
        "naive": span_scores(gold, tags),
        "naive_stats": first,
        "naive_cached_stats": cached,
        "cached_wall_ratio": ratio,
        "naive_gold_tags": gold,
        "naive_tags": tags,
        "naive_tagger_tags": tagger_tags,
    }


def llm_eval(
    checkpoint: Path | str,
    cfg: CdlmConfig,
    *,
    subset: int | None = 200,
    seed: int = 1,
    calibrate_routing: bool = True,
    naive_subset: int = 0,
    naive_start: int = 0,
    data_dir: Path | str | None = None,
    domain: str | None = None,
) -> LLMEvalResult:
    """Tagger alone vs tagger + LLM (see the module docstring); nothing is written here."""
    from cdlm.data.registry import load_split
    from cdlm.experiments.evaluate import open_for_domain
    from cdlm.provenance import stamp

    m, head, target = open_for_domain(checkpoint, domain)
    m.config = cfg  # the run's routing, reasoning and LLM settings, as users pass `config=`
    test = seeded_subset(load_split(target, "test", data_dir), subset, seed)
    test_views = tagger_views(m, test, cfg, head)
    if naive_subset and not 0 <= naive_start <= len(test_views) - naive_subset:
        raise ConfigError(
            f"naive range [{naive_start}, {naive_start + naive_subset}) is outside the "
            f"{len(test_views)}-sentence test subset"
        )
    new_task = task_maker(cfg, target, m.labels(head))
    router, calibrated = Router.from_config(cfg.routing), {}
    if calibrate_routing:
        dev_n = cfg.routing.calibration_sentences
        dev = seeded_subset(load_split(target, "dev", data_dir), dev_n, seed)
        router, calibrated = calibrated_router(new_task(), tagger_views(m, dev, cfg, head), cfg)
    task = new_task()
    outcomes, routed_stats = run_pipeline(task, router, test_views, "routed test")
    naive = test_views[naive_start : naive_start + naive_subset]
    config = cfg.model_dump(mode="json")
    return LLMEvalResult(
        domain=str(target),
        checkpoint=str(checkpoint),
        backend=cfg.llm.backend,
        model=task.backend.model,
        seed=seed,
        test_sentences=len(test_views),
        naive_sentences=naive_subset,
        naive_start=naive_start,
        tagger=span_scores([v.gold for v in test_views], [v.tags for v in test_views]),
        routed=score(test_views, outcomes),
        routed_stats=routed_stats,
        threshold=router.threshold,
        config=config,
        provenance=stamp(seed=seed, config=config),
        **calibrated,
        **(naive_passes(new_task, naive) if naive else {}),
    )


_SUMMED = (
    "sentences", "routed", "asked_candidates", "wall_seconds", "calls", "prompt_tokens",
    "completion_tokens", "cache_hits", "fallbacks", "dropped_ungrounded", "changed",
    "changed_better", "changed_worse",
)  # fmt: skip


def sum_stats(parts: Sequence[RunStats]) -> RunStats:
    """Costs of runs over disjoint sentences, added up (per-sentence figures recomputed)."""
    total: dict[str, Any] = {f: sum(getattr(p, f) for p in parts) for f in _SUMMED}
    usage: dict[str, dict[str, float | int]] = {}
    for part in parts:
        for stage, row in part.usage.items():
            into = usage.setdefault(stage, {})
            for key, value in row.items():
                into[key] = into.get(key, 0) + value
    return stats_from_totals(**total, usage=usage)


def _comparable(result: LLMEvalResult) -> dict[str, Any]:
    """What must agree between naive ranges: all but the cache folder and the routing."""
    config = {k: v for k, v in result.config.items() if k != "routing"}
    config["llm"] = {k: v for k, v in config["llm"].items() if k != "cache_dir"}
    keys = ("domain", "checkpoint", "backend", "model", "seed", "test_sentences")
    return {"config": config, **{k: getattr(result, k) for k in keys}}


def merge_naive_runs(parts: Sequence[LLMEvalResult], provenance: dict[str, Any]) -> LLMEvalResult:
    """One result from naive ranges run separately, e.g. in sessions too short for all of them.

    The ranges must tile ``[0, n)`` and agree on checkpoint, model, seed and config; scores are
    recomputed from the stored per-sentence tags (exact seqeval, not averaged F1s) and costs are
    added up. The routed rows come from the part that calibrated (else the first)."""
    if not parts:
        raise ConfigError("merge: no results given")
    ordered = sorted(parts, key=lambda r: r.naive_start)
    expected = _comparable(ordered[0])
    end = 0
    for part in ordered:
        where = f"naive range starting at {part.naive_start}"
        if part.naive_stats is None or part.naive_tags is None or part.naive_gold_tags is None:
            raise ConfigError(f"merge: {where} has no naive run with per-sentence tags")
        if part.naive_start != end:
            raise ConfigError(f"merge: {where}, expected {end} (ranges must tile the subset)")
        if _comparable(part) != expected:
            raise ConfigError(f"merge: {where} differs in checkpoint, model, seed or config")
        end += part.naive_sentences
    gold = [t for p in ordered for t in p.naive_gold_tags or []]
    pred = [t for p in ordered for t in p.naive_tags or []]
    tagger = [t for p in ordered for t in p.naive_tagger_tags or []]
    first = sum_stats([p.naive_stats for p in ordered if p.naive_stats is not None])
    cached = sum_stats([p.naive_cached_stats for p in ordered if p.naive_cached_stats is not None])
    routed = next((p for p in ordered if p.calibration is not None), ordered[0])
    return routed.model_copy(
        update={
            "naive_start": 0,
            "naive_sentences": end,
            "naive_tagger": span_scores(gold, tagger),
            "naive": span_scores(gold, pred),
            "naive_stats": first,
            "naive_cached_stats": cached,
            "cached_wall_ratio": cached.wall_seconds / first.wall_seconds
            if first.wall_seconds > 0
            else None,
            "naive_gold_tags": gold,
            "naive_tags": pred,
            "naive_tagger_tags": tagger,
            "provenance": {
                **provenance,
                "parts": [
                    {
                        "naive_start": p.naive_start,
                        "naive_sentences": p.naive_sentences,
                        "command": p.provenance.get("command"),
                        "commit": p.provenance.get("commit"),
                    }
                    for p in ordered
                ],
            },
        }
    )


def _stats_row(name: str, scores: SpanScores | None, stats: RunStats | None) -> str:
    f1 = f"{100 * scores.f1:.2f}" if scores is not None else "-"
    if stats is None:
        return f"| {name} | {f1} | 0 | 0.00 | 0 | 0.00 | 0 | 0 | 0/0 |"
    return (
        f"| {name} | {f1} | {stats.routed_share:.1%} | {stats.calls_per_sentence:.2f} | "
        f"{stats.tokens_per_sentence:.0f} | {stats.seconds_per_sentence:.2f} | "
        f"{stats.fallbacks} | {stats.dropped_ungrounded} | "
        f"{stats.changed_better}/{stats.changed_worse} |"
    )


def _routing_label(result: LLMEvalResult) -> str:
    how = "calibrated routing" if result.calibration is not None else "configured routing"
    budget = result.config["routing"]["budget"]
    cap = f", budget {budget:.0%}" if budget is not None else ""
    return f"{how}, threshold {result.threshold:.3f}{cap} ({result.test_sentences})"


def _naive_range(result: LLMEvalResult) -> str:
    if result.naive_start == 0:
        return f"the first {result.naive_sentences}"
    return f"sentences {result.naive_start}-{result.naive_start + result.naive_sentences - 1}"


def write_llm_results(result: LLMEvalResult, results_dir: Path | str, name: str = "") -> Path:
    """``<domain>__llm-<backend>[-<name>]__seed<N>.json`` plus a Markdown table beside it."""
    tag = f"-{name}" if name else ""
    stem = f"{result.domain}__llm-{result.backend}{tag}__seed{result.seed}"
    lines = [
        f"# {result.domain}: tagger vs tagger + LLM ({result.backend}, {Path(result.model).name})",
        "",
        f"Command: `{result.provenance['command']}`  ",
        f"Commit: {result.provenance['commit']}, seed {result.seed}, checkpoint "
        f"`{result.checkpoint}`",
        "",
        f"Test subset: {result.test_sentences} sentences; calibration on {result.dev_sentences} "
        f"dev sentences; naive pipeline on {_naive_range(result)} of the test subset.",
        "",
        "| pipeline | F1 | routed | calls/sent | tokens/sent | s/sent | fallbacks | dropped "
        "| changed better/worse |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        _stats_row(f"tagger only ({result.test_sentences})", result.tagger, None),
        _stats_row(_routing_label(result), result.routed, result.routed_stats),
    ]
    if result.naive_stats is not None:
        lines += [
            _stats_row(f"tagger only ({result.naive_sentences})", result.naive_tagger, None),
            _stats_row(
                f"naive, route everything ({result.naive_sentences})",
                result.naive,
                result.naive_stats,
            ),
            _stats_row(
                f"naive, cached re-run ({result.naive_sentences})",
                result.naive,
                result.naive_cached_stats,
            ),
        ]
    if result.cached_wall_ratio is not None:
        lines += ["", f"Cached re-run wall time / first run: {result.cached_wall_ratio:.4f}"]
    if parts := result.provenance.get("parts"):
        lines += ["", "Merged from naive ranges run separately (each timed on its own):", ""]
        lines += [
            f"- sentences {p['naive_start']}-{p['naive_start'] + p['naive_sentences'] - 1}: "
            f"`{p['command']}` at {p['commit']}"
            for p in parts
        ]
    if result.calibration:
        lines += [
            "",
            "Calibration on dev (share routed -> dev F1):",
            "",
            "| share | threshold | routed | dev F1 |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {p['share']:.2f} | {p['threshold']:.3f} | {p['routed']} | {100 * p['dev_f1']:.2f} |"
            for p in result.calibration
        ]
    return write_results(Path(results_dir) / f"{stem}.json", result, "\n".join(lines) + "\n")
