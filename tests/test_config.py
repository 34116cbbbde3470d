"""Config assembly: the one function that turns ``--llm/--model/--base-url`` into a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.config import (
    LIFETIMES,
    CdlmConfig,
    Section,
    check_lifetimes,
    from_saved,
    llm_run_config,
    load_config,
)
from cdlm.errors import ConfigError


def test_llm_run_config_same_from_object_path_or_nothing(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[llm]\nmodel = "m.gguf"\nn_ctx = 2048\n[routing]\nthreshold = 0.4\n')
    from_path = llm_run_config(toml, "llama", None, "http://127.0.0.1:1")
    from_object = llm_run_config(load_config(toml), "llama", None, "http://127.0.0.1:1")
    assert from_path == from_object
    assert from_path.llm.backend == "llama" and from_path.llm.model == "m.gguf"  # None keeps
    assert from_path.llm.n_ctx == 2048 and from_path.routing.threshold == 0.4
    assert llm_run_config(None, "gpt", "gpt-x").llm.model == "gpt-x"


def test_llm_run_config_applies_further_overrides_and_validates() -> None:
    cfg = llm_run_config(CdlmConfig(), "llama", overrides={"routing.budget": 0.2})
    assert cfg.routing.budget == 0.2 and cfg.llm.backend == "llama"
    with pytest.raises(ConfigError, match=r"^config: field 'routing.budget'"):
        llm_run_config(CdlmConfig(), "llama", overrides={"routing.budget": 2.0})
    with pytest.raises(ConfigError, match="--llm: expected one of none, llama, gpt, got 'bert'"):
        llm_run_config(None, "bert")


def test_set_overrides_parse_json_values_and_refuse_a_missing_equals_sign() -> None:
    from cdlm.config import parse_overrides

    assert parse_overrides(["reasoning.vote=scores", "reasoning.experts=1", "x.y=null"]) == {
        "reasoning.vote": "scores",
        "reasoning.experts": 1,
        "x.y": None,
    }
    assert parse_overrides(['llm.stage_max_tokens={"vote": 64}']) == {
        "llm.stage_max_tokens": {"vote": 64}
    }
    with pytest.raises(ConfigError, match=r"--set 'reasoning\.vote': expected KEY=VALUE"):
        parse_overrides(["reasoning.vote"])


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("llm.timeout_s", -1),
        ("llm.max_tokens", -5),
        ("llm.n_ctx", -1),
        ("llm.n_threads", 0),
        ("llm.temperature", -0.5),
        ("llm.stage_max_tokens", {"vote": -1}),
        ("train.threads", -2),
        ("train.seed", -1),
        ("train.weight_decay", -0.1),
        ("routing.calibration_shares", [0.1, 1.5]),
    ],
)
def test_a_number_out_of_its_natural_bounds_is_one_line_naming_the_field(
    dotted: str, value: object
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {dotted: value})
    message = str(info.value)
    assert message.startswith(f"config: field '{dotted}") and "\n" not in message


@pytest.mark.parametrize("text", ["llm = 3\n", 'train = "x"\n', 'llm = "gpt"\n[train]\nseed = 1\n'])
def test_a_scalar_where_a_section_belongs_is_one_line(tmp_path: Path, text: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(text)
    for overrides in ({}, {"llm.backend": "llama"}, {"train.seed": 2}):
        with pytest.raises(ConfigError) as info:
            llm_run_config(toml, "llama", overrides=overrides)
        message = str(info.value)
        assert message.startswith(f"{toml}: ") and "\n" not in message
        assert "llm" in message or "train" in message


def test_a_scalar_section_through_the_cli_is_exit_2_without_traceback(tmp_path: Path, cdlm_cli):
    toml = tmp_path / "bad.toml"
    toml.write_text('train = "x"\n')
    done = cdlm_cli("model", "build-default", "--config", str(toml), "--threads", "1")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(toml) in lines[0] and "train" in lines[0]


def test_bounds_keep_every_default() -> None:
    """Bounds are checks only: every default validates and dumps as before (run hashes)."""
    cfg = CdlmConfig()
    assert CdlmConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert cfg.llm.n_ctx == 4096 and cfg.llm.max_tokens == 512 and cfg.llm.timeout_s == 60.0
    assert cfg.train.threads is None and cfg.train.grad_clip == 1.0


def test_every_section_has_one_lifetime_declared_on_its_class() -> None:
    """Model, training and runtime configs split CdlmConfig's sections between them, each
    section declared once, in its class (``lifetime``)."""
    parts = [CdlmConfig.section_names(life) for life in LIFETIMES]
    names = [name for part in parts for name in part]
    assert sorted(names) == sorted(CdlmConfig.model_fields)  # every section, exactly once
    model, training, runtime = parts
    assert model == ("encoder", "tagger", "fusion", "causal")
    assert training == ("train", "augment", "default_model", "multisource", "selftrain")
    assert {"llm", "serve", "corpus", "quantize"} <= set(runtime)
    cfg = CdlmConfig()
    assert list(cfg.sections("runtime")) == list(runtime)
    assert set(cfg.saved_dump()) == set(model + training)


def test_a_section_without_a_lifetime_fails_to_declare() -> None:
    class Undeclared(Section):
        level: int = 1

    class Extended(CdlmConfig):
        extra: Undeclared = Undeclared()

    with pytest.raises(TypeError, match=r"Extended\.extra \(Undeclared\): declare lifetime"):
        check_lifetimes(Extended)
    check_lifetimes(CdlmConfig)


def test_a_saved_config_loads_without_its_runtime_sections() -> None:
    """A checkpoint's runtime sections (older checkpoints saved them) are ignored, even ones
    this cdlm could not read; its model and training settings are kept."""
    cfg = load_config(None, {"train.lr": 3e-4, "serve.port": 9000, "llm.backend": "gpt"})
    old = cfg.model_dump(mode="json")
    old["serve"]["retired_knob"] = 1  # a runtime field since removed
    old["causal"]["l_ecf"] = 0.1  # a retired model field (RETIRED_FIELDS)
    loaded = from_saved(old)
    assert loaded.train.lr == 3e-4
    assert loaded.serve.port == 8000 and loaded.llm.backend == "none"
    assert from_saved(cfg.saved_dump()) == loaded
