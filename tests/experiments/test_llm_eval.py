"""``llm_eval`` naive ranges and their merge: ranges run separately (each a fresh, timed run)
combine into exactly the scores of one run over the whole range, with the costs added up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdlm.config import load_config
from cdlm.errors import ConfigError
from cdlm.experiments.llm_eval import llm_eval, merge_naive_runs, write_llm_results


@pytest.fixture(scope="module")
def cfg(smollm_path: Path, tmp_path_factory: pytest.TempPathFactory):
    return load_config(
        None,
        {
            "llm.backend": "llama",
            "llm.model": str(smollm_path),
            "llm.cache_dir": str(tmp_path_factory.mktemp("eval_cache")),
            "llm.n_threads": 1,
            "llm.max_tokens": 160,
            "llm.stage_max_tokens": {"vote": 320},
            "llm.schema_in_prompt": False,
            "reasoning.experts": 1,
            "reasoning.rounds": 1,
            "reasoning.max_links": 2,
            "reasoning.max_reason_chars": 30,
            # The tiny tagger leaves most words near p(O) = 0.5: without this every word would
            # be a likely-missed candidate and two sentences would take minutes.
            "reasoning.missed_o_max": 0.0,
            "reasoning.selfcheck": "off",
            "routing.budget": 0.0,  # the routed pass asks nothing: the naive ranges are tested
        },
    )


def test_naive_ranges_merge_into_the_single_run(cfg, tiny_checkpoint, small_crossner, tmp_path):
    def naive(start: int, n: int):
        return llm_eval(
            tiny_checkpoint, cfg, subset=None, calibrate_routing=False, naive_subset=n,
            naive_start=start, data_dir=small_crossner,
        )  # fmt: skip

    parts = [naive(0, 1), naive(1, 1)]  # fresh cache: real SmolLM2 calls
    assert all(p.naive_stats is not None and p.naive_stats.calls > 0 for p in parts)
    whole = naive(0, 2)  # the same answers, now from the cache
    merged = merge_naive_runs(list(reversed(parts)), {"command": "merge", "commit": "x"})

    assert merged.naive_sentences == 2 and merged.naive_start == 0
    assert merged.naive_tags == whole.naive_tags and merged.naive_gold_tags == whole.naive_gold_tags
    assert merged.naive == whole.naive and merged.naive_tagger == whole.naive_tagger
    assert merged.naive_stats.calls == sum(p.naive_stats.calls for p in parts)
    assert merged.naive_stats.sentences == 2
    assert merged.naive_stats.calls_per_sentence == merged.naive_stats.calls / 2
    assert [p["naive_start"] for p in merged.provenance["parts"]] == [0, 1]
    md = write_llm_results(merged, tmp_path, "merged").with_suffix(".md").read_text()
    assert "naive pipeline on the first 2" in md and "- sentences 1-1:" in md

    with pytest.raises(ConfigError, match="expected 1"):  # a gap
        merge_naive_runs([parts[0], parts[1].model_copy(update={"naive_start": 2})], {})
    with pytest.raises(ConfigError, match="expected 1"):  # an overlap
        merge_naive_runs([parts[0], whole], {})
    other = parts[1].model_copy(update={"seed": 7})
    with pytest.raises(ConfigError, match="differs"):
        merge_naive_runs([parts[0], other], {})
    with pytest.raises(ConfigError, match="outside"):
        naive(1, 10_000)


def test_one_backend_per_eval_run(
    smollm_path, tiny_checkpoint, small_crossner, tmp_path, monkeypatch
):
    """A real ``cdlm eval --llm llama --calibrate --naive-subset`` run (calibration on dev, the
    routed test, the naive pass and its cached re-run) builds its LLM backend once: one GGUF
    load per run, not one per pass."""
    import sys

    import cdlm.llm.factory as factory
    from cdlm.cli import main

    built = []
    real = factory.make_backend

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(factory, "make_backend", counting)  # counts, the real backend answers
    config = tmp_path / "llm.toml"
    config.write_text(
        f'[llm]\ncache_dir = "{tmp_path / "cache"}"\nn_threads = 1\nmax_tokens = 160\n'
        "schema_in_prompt = false\nstage_max_tokens = { vote = 320 }\n"
        "[reasoning]\nexperts = 1\nrounds = 1\nmax_links = 2\nmax_reason_chars = 30\n"
        'missed_o_max = 0.0\nselfcheck = "off"\n'
        "[routing]\nbudget = 0.0\ncalibration_sentences = 2\ncalibration_shares = [0.0, 0.5]\n",
        encoding="utf-8",
    )
    args = ["eval", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(small_crossner)]
    args += ["--llm", "llama", "--model", str(smollm_path), "--config", str(config)]
    args += ["--calibrate", "--subset", "2", "--naive-subset", "1", "--output", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["cdlm", *args])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    res = json.loads((tmp_path / "politics__llm-llama__seed1.json").read_text(encoding="utf-8"))
    assert res["calibration_stats"]["calls"] > 0 and res["naive_stats"]["calls"] > 0
    assert res["naive_cached_stats"]["cache_hits"] > 0  # the re-run read the warm cache
    assert len(built) == 1
