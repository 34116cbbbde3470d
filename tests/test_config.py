"""Config assembly: the one function that turns ``--llm/--model/--base-url`` into a config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdlm.config import CdlmConfig, llm_run_config, load_config
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
