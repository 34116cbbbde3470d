"""Label descriptions read by the data floor (cdlm/data/labels.py): the one reader that tagger
training (head-row init) and the LLM prompts share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdlm.data.labels import (
    default_labels_dir,
    label_domain_name,
    label_file,
    load_label_descriptions,
)
from cdlm.errors import TemplateError


def test_a_shipped_domain_by_name_by_path_and_by_toml_name() -> None:
    politics = load_label_descriptions("politics")
    assert list(politics)[:2] == ["politician", "person"]  # file order
    assert "office holder" in politics["politician"]
    path = default_labels_dir() / "politics.toml"
    assert label_file("politics") == path and path.is_file()
    assert load_label_descriptions(path) == politics == load_label_descriptions(str(path))
    assert label_domain_name("politics") == "politics"


def test_missing_file_has_no_descriptions(tmp_path: Path) -> None:
    assert load_label_descriptions("no-such-domain") == {}
    assert load_label_descriptions(tmp_path / "none.toml") == {}
    assert label_domain_name(tmp_path / "none.toml") is None


def test_a_users_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('domain = "my news"\n[types]\nperson = "a human"\n', encoding="utf-8")
    assert load_label_descriptions(mine) == {"person": "a human"}
    assert label_domain_name(mine) == "my news"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[types\n", "not valid TOML"),
        ("[types]\nperson = 3\n", "must map each type name to a description string"),
    ],
)
def test_a_broken_file_is_a_one_line_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(TemplateError, match=message) as info:
        load_label_descriptions(bad)
    assert str(bad) in str(info.value)


def test_the_prompts_and_training_read_the_same_descriptions(tmp_path: Path) -> None:
    """The reasoning stages' label view (PromptSet.labels / load_label_file) and the tagger's
    head-row init (label_descriptions) both go through the data-floor reader."""
    from cdlm.config import load_config
    from cdlm.experiments.train import label_descriptions
    from cdlm.reasoning.templates import load_label_file, open_prompts

    politics = load_label_descriptions("politics")
    prompts = open_prompts(None, [])
    described = prompts.labels("politics", list(politics))
    assert {d["name"]: d["description"] for d in described} == politics
    assert load_label_file(default_labels_dir() / "politics.toml") == politics
    cfg = load_config(None, {"train.target": "politics", "tagger.label_init": "descriptions"})
    assert label_descriptions(cfg) == politics
    mine = tmp_path / "mine.toml"
    mine.write_text('domain = "my news"\n[types]\nperson = "a human"\n', encoding="utf-8")
    user = open_prompts(None, [], labels_file=mine)
    assert user.labels(None, ["person"]) == [{"name": "person", "description": "a human"}]
    assert user.domain_name(None) == "my news"


def test_the_data_floor_loads_no_llm_or_reasoning_code() -> None:
    code = (
        "import sys, cdlm.data.labels as m; m.load_label_descriptions('politics'); "
        "print(' '.join(n for n in sys.modules if n.startswith(('cdlm.reasoning', 'cdlm.llm'))))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == ""
