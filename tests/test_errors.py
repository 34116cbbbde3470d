"""Optional extras: a missing one is one line saying what to install."""

from __future__ import annotations

import pytest

from cdlm.errors import CdlmError, MissingExtraError, require


def test_require_imports_an_installed_module() -> None:
    assert require("json", "plot", "anything").dumps([]) == "[]"


def test_a_missing_extra_names_the_pip_command() -> None:
    with pytest.raises(MissingExtraError) as info:
        require("llama_cpp_not_here", "llama", "--llm llama")
    message = str(info.value)
    assert message.startswith("--llm llama needs llama_cpp_not_here")
    assert "pip install 'cdlm[llama]'" in message and "\n" not in message
    assert isinstance(info.value, CdlmError) and info.value.exit_code == 2
