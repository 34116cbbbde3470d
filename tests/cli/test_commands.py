"""One command, one job: ``cdlm eval`` / ``eval suite FILE`` / ``eval llm`` and ``cdlm predict``
/ ``predict corpus``; ``--set KEY=VALUE`` reaching the config of every command that reads one;
the old spellings still working, each with one ``note:`` line on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer

from cdlm.cli import main


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note: ")]


class Seen(Exception):
    """Raised by a stand-in for the work a command would do, once it has seen its input."""


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch):
    """Stand-ins for the heavy work (training, a suite, an LLM evaluation, loading a model, a
    corpus run) that record what the command handed over and stop there (exit 0)."""
    import cdlm.experiments.llm_eval as llm_eval
    import cdlm.experiments.suite as suite
    import cdlm.experiments.train as train
    import cdlm.inference.corpus as corpus
    from cdlm.inference.model import CDLM

    got: dict = {}

    def stop(name: str, **values):
        got[name] = SimpleNamespace(**values)
        raise typer.Exit(0)

    monkeypatch.setattr(train, "train", lambda cfg, out, **kw: stop("train", cfg=cfg, out=out))
    monkeypatch.setattr(suite, "run_suite", lambda spec, **kw: stop("suite", spec=spec, **kw))
    monkeypatch.setattr(llm_eval, "llm_eval", lambda ckpt, cfg, **kw: stop("llm", cfg=cfg, **kw))
    monkeypatch.setattr(
        CDLM, "from_pretrained", lambda name, config=None, **kw: stop("model", cfg=config)
    )
    monkeypatch.setattr(
        corpus,
        "predict_corpus",
        lambda source, output, spec, **kw: stop("corpus", source=source, spec=spec, **kw),
    )
    return got


# --- the command tree -----------------------------------------------------------------------


def test_command_tree_and_one_line_help(capsys) -> None:
    _, top, _ = _run(capsys, "-h")
    assert "eval" in top and "predict" in top
    _, evaluate, _ = _run(capsys, "eval", "-h")
    assert "Usage: cdlm eval [OPTIONS]" in evaluate and "Score one model" in evaluate
    assert "cdlm eval suite FILE" in evaluate and "cdlm eval llm" in evaluate
    _, suite, _ = _run(capsys, "eval", "suite", "-h")
    assert "Usage: cdlm eval suite [OPTIONS] {FILE}" in suite and "--variants" in suite
    _, llm, _ = _run(capsys, "eval", "llm", "-h")
    assert "Usage: cdlm eval llm [OPTIONS]" in llm and "<llama|gpt>" in llm
    assert "--calibrate" in llm and "--naive-subset" in llm
    _, predict, _ = _run(capsys, "predict", "-h")
    assert "Usage: cdlm predict [OPTIONS] [text]..." in predict
    assert "cdlm predict corpus" in predict and "cdlm predict -- corpus" in predict
    assert "--workers" not in predict and "--output" not in predict
    _, corpus, _ = _run(capsys, "predict", "corpus", "-h")
    assert "Usage: cdlm predict corpus [OPTIONS]" in corpus
    for option in ("--input", "--output", "--workers", "--engine", "--overwrite", "--progress"):
        assert option in corpus


@pytest.mark.parametrize(
    ("path", "hidden"),
    [
        ("train", ["--encoder", "--no-gcn", "--k-shot", "--max-train-sentences"]),
        ("predict", ["--llm-budget", "--llm-threshold", "--prompts-dir"]),
        ("predict corpus", ["--ray-address", "--llm-budget", "--prompts-dir"]),
    ],
)
def test_set_is_offered_and_the_old_key_options_are_hidden(path, hidden, capsys) -> None:
    _, out, _ = _run(capsys, *path.split(), "-h")
    assert "--set" in out and "KEY=VALUE" in out
    for option in hidden:
        assert f"{option} " not in out, option


@pytest.mark.parametrize("path", ["eval", "eval suite", "eval llm", "predict", "predict corpus"])
def test_every_command_offers_set(path, capsys) -> None:
    _, out, _ = _run(capsys, *path.split(), "-h")
    assert "--set" in out


# --- train ----------------------------------------------------------------------------------


def test_train_set_reaches_the_config(seen, capsys) -> None:
    code, _, err = _run(
        capsys, "train", "--target", "politics", "--set", "train.target_epochs=1",
        "--set", "train.lr_decay=\"linear\"", "--set", "train.k_shot=4",
    )  # fmt: skip
    assert code == 0 and _notes(err) == [], err
    cfg = seen["train"].cfg
    assert (cfg.train.target_epochs, cfg.train.k_shot, cfg.train.target) == (1, 4, "politics")
    assert cfg.train.variant == "default"


@pytest.mark.parametrize(
    ("args", "variant", "off"),
    [
        (["--variant", "full", "--set", "causal.explicit=false"], "full-no-ecf", "explicit"),
        (["--variant", "full", "--no-explicit-cf"], "full-no-ecf", "explicit"),  # old spelling
        (["--variant", "full", "--no-gcn"], "full-no-gcn", "gcn"),
        (["--variant", "gcn", "--set", "augment.method=factmix"], "gcn+factmix", None),
        (["--variant", "gcn", "--augment", "factmix"], "gcn+factmix", None),
        (["--variant", "baseline+factmix-long"], "baseline+factmix-long", None),
        (["--variant", "full+factmix", "--no-gcn"], "full+factmix-no-gcn", "gcn"),
    ],
)
def test_train_run_names_what_was_switched_off(seen, capsys, args, variant, off) -> None:
    """The variant's switches hold unless switched off on top, which renames the run; options
    left unset (--augment) never undo a variant's switch."""
    code, _, err = _run(capsys, "train", "--target", "politics", *args)
    assert code == 0, err
    cfg = seen["train"].cfg
    assert cfg.train.variant == variant
    assert (cfg.augment.method == "factmix") is ("factmix" in variant)
    if off == "explicit":
        assert cfg.causal.explicit is False and cfg.fusion.enabled is True
    if off == "gcn":
        assert cfg.fusion.enabled is False and cfg.causal.explicit is True


def test_train_old_options_still_work_with_a_note(seen, capsys) -> None:
    code, _, err = _run(
        capsys, "train", "--target", "politics", "--epochs", "2", "--source-seed=3",
        "--encoder", "123", "--max-train-sentences", "8", "--k-shot", "4",
    )  # fmt: skip
    assert code == 0, err
    cfg = seen["train"].cfg
    assert (cfg.train.target_epochs, cfg.train.source_seed, cfg.train.k_shot) == (2, 3, 4)
    assert (cfg.encoder.name, cfg.train.max_train_sentences) == ("123", 8)  # a name, kept text
    assert _notes(err) == [
        "note: --source-seed is deprecated; use --set train.source_seed=3",
        'note: --encoder is deprecated; use --set encoder.name="123"',
        "note: --max-train-sentences is deprecated; use --set train.max_train_sentences=8",
        "note: --k-shot is deprecated; use --set train.k_shot=4",
    ]  # --epochs is an everyday option: no note


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "train.target_epochs"],
            "error: --set 'train.target_epochs': expected KEY=VALUE",
        ),
        (["--set", "train.nope=1"], "error: config: field 'train.nope': Extra inputs"),
        (["--set", "train.target_epochs=many"], "error: config: field 'train.target_epochs'"),
        (["--seed", "2", "--set", "train.seed=3"], "error: --set train.seed: an option of"),
    ],
)
def test_bad_set_is_one_line_exit_2(seen, capsys, args, message) -> None:
    code, out, err = _run(capsys, "train", "--target", "politics", *args)
    assert code == 2 and out == "" and "train" not in seen
    assert err.count("\n") == 1 and err.startswith(message), err


def test_train_set_on_the_synthetic_corpus(small_crossner: Path, tmp_path: Path, capsys) -> None:
    """A real (tiny) training run: the --set values shape it (one epoch, 8 sentences)."""
    out = tmp_path / "run"
    code, stdout, err = _run(
        capsys, "train", "--target", "politics", "--data-dir", str(small_crossner),
        "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "-o", str(out),
        "--set", "train.source_epochs=0", "--set", "train.target_epochs=1",
        "--set", "train.max_train_sentences=8",
    )  # fmt: skip
    assert code == 0, err
    assert f"checkpoint: {out}" in stdout
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))["config"]["train"]
    assert (saved["target_epochs"], saved["max_train_sentences"]) == (1, 8)
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert len(scores["history"]) == 1


def test_train_with_auxiliaries_on_the_synthetic_corpus(
    small_crossner: Path, tmp_path: Path, capsys
) -> None:
    """`cdlm train --with conll2003`: a real (tiny) multi-source run whose saved model records
    its auxiliary; `--with none` is the target alone; an unknown domain is one line, exit 2,
    before any training."""
    out = tmp_path / "run"
    common = [
        "train", "--target", "politics", "--data-dir", str(small_crossner), "--threads", "1",
        "--runs-dir", str(tmp_path / "runs"), "--set", "train.source_epochs=0",
        "--set", "train.target_epochs=1", "--set", "train.max_train_sentences=8",
    ]  # fmt: skip
    code, stdout, err = _run(capsys, *common, "--with", "conll2003", "-o", str(out))
    assert code == 0, err
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))["config"]
    assert saved["multisource"]["auxiliaries"] == ["conll2003"]
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert [a["data"] for a in scores["auxiliaries"]] == ["conll2003"]  # trained beside it
    code, _, err = _run(capsys, *common, "--with", "none", "-o", str(tmp_path / "alone"))
    assert code == 0, err
    alone = json.loads((tmp_path / "alone" / "config.json").read_text(encoding="utf-8"))
    assert alone["config"]["multisource"]["auxiliaries"] == []
    code, _, err = _run(capsys, *common, "--with", "nowhere", "-o", str(tmp_path / "bad"))
    assert code == 2 and err.count("\n") == 1 and "nowhere" in err, err
    assert not (tmp_path / "bad").exists()


def test_train_unlabeled_on_the_synthetic_corpus(
    small_crossner: Path, tmp_path: Path, capsys
) -> None:
    """`cdlm train --unlabeled FILE`: a real (tiny) self-training run writes a student that
    loads; a bad pool line is one FILE:LINE line, exit 2, before any training."""
    pool = tmp_path / "pool.txt"
    pool.write_text("Angela Merkel visited Paris .\nThe Green Party won the 2019 election .\n")
    out = tmp_path / "run"
    common = [
        "train", "--target", "politics", "--data-dir", str(small_crossner), "--threads", "1",
        "--runs-dir", str(tmp_path / "runs"), "--set", "train.source_epochs=0",
        "--set", "train.target_epochs=1", "--set", "train.max_train_sentences=8",
        "--set", "selftrain.choose=false", "--set", "selftrain.threshold=0.0",
    ]  # fmt: skip
    code, stdout, err = _run(capsys, *common, "--unlabeled", str(pool), "-o", str(out))
    assert code == 0, err
    assert "pool: 2 texts" in stdout and (out / "scores.json").is_file()
    from cdlm.inference.model import CDLM

    assert CDLM.from_pretrained(out).labels()  # the student loads and has its types
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    code, _, err = _run(capsys, *common, "--unlabeled", str(bad), "-o", str(tmp_path / "b"))
    assert code == 2 and err.strip().endswith("expected a string, got nothing"), err
    assert f"{bad}:2:" in err and not (tmp_path / "b").exists()


# --- eval -----------------------------------------------------------------------------------


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        'name = "tiny"\nvariants = ["baseline", "gcn"]\ndomains = ["politics", "music"]\n'
        f'results_dir = "{tmp_path / "res"}"\n[overrides]\n"train.target_epochs" = 3\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("old", [False, True])
def test_eval_suite(seen, suite_file: Path, tmp_path: Path, capsys, old: bool) -> None:
    where = ["eval", "--suite", str(suite_file)] if old else ["eval", "suite", str(suite_file)]
    code, _, err = _run(
        capsys, *where, "--domains", "music", "--no-train", "-o", str(tmp_path / "o"),
        "--set", "train.k_shot=5",
    )  # fmt: skip
    assert code == 0, err
    got = seen["suite"]
    assert got.spec.overrides == {"train.target_epochs": 3, "train.k_shot": 5}
    assert got.part.domains == ["music"] and got.spec.domains == ["politics", "music"]
    assert got.spec.results_dir == str(tmp_path / "o") and got.train is False
    notes = ["note: cdlm eval --suite FILE is deprecated; use cdlm eval suite FILE"]
    assert _notes(err) == (notes if old else [])


def test_eval_suite_bad_set_fails_before_any_run(seen, suite_file: Path, capsys) -> None:
    code, _, err = _run(capsys, "eval", "suite", str(suite_file), "--set", "train.nope=1")
    assert code == 2 and "suite" not in seen
    assert err.count("\n") == 1 and err.startswith("error: config: field 'train.nope'")


@pytest.mark.parametrize("old", [False, True])
def test_eval_llm(seen, tmp_path: Path, capsys, old: bool) -> None:
    labels = tmp_path / "labels.toml"
    where = ["eval"] if old else ["eval", "llm"]
    code, _, err = _run(
        capsys, *where, "--checkpoint", "my-model", "--llm", "gpt", "--base-url", "http://x/v1",
        "--labels", str(labels), "--calibrate", "--subset", "5",
        "--set", "routing.threshold=0.3", "--set", "reasoning.experts=1",
    )  # fmt: skip
    assert code == 0, err
    got = seen["llm"]
    assert (got.cfg.llm.backend, got.cfg.llm.base_url) == ("gpt", "http://x/v1")
    assert (got.cfg.routing.threshold, got.cfg.reasoning.experts) == (0.3, 1)
    assert got.cfg.reasoning.labels_file == str(labels)
    assert (got.calibrate_routing, got.subset) == (True, 5)
    notes = ["note: cdlm eval --llm is deprecated; use cdlm eval llm --llm"]
    assert _notes(err) == (notes if old else [])


def test_eval_llm_none_is_the_plain_evaluation(capsys) -> None:
    """`cdlm eval --llm none` (the old default, spelt out) is `cdlm eval`: no note."""
    code, _, err = _run(capsys, "eval", "--llm", "none", "--checkpoint", "/nowhere/at/all")
    assert code == 2 and _notes(err) == [] and err.startswith("error: no model at"), err


def test_plain_eval_refuses_set(capsys) -> None:
    code, out, err = _run(capsys, "eval", "--set", "tagger.decode=argmax")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("error: --set: `cdlm eval` scores a model with the config it was saved")


# --- predict --------------------------------------------------------------------------------


def test_predict_set_reaches_the_config(seen, capsys) -> None:
    code, _, err = _run(
        capsys, "predict", "Merkel met Macron.", "--set", "routing.threshold=0.25",
        "--set", "predict.max_padding=2.5", "--llm-budget", "0.1", "--prompts-dir=mine",
    )  # fmt: skip
    assert code == 0, err
    cfg = seen["model"].cfg
    assert (cfg.routing.threshold, cfg.predict.max_padding, cfg.routing.budget) == (0.25, 2.5, 0.1)
    assert cfg.reasoning.prompts_dir == "mine"
    assert _notes(err) == [
        "note: --llm-budget is deprecated; use --set routing.budget=0.1",
        "note: --prompts-dir is deprecated; use --set reasoning.prompts_dir=mine",
    ]


def test_predict_set_and_an_option_for_the_same_key(seen, capsys) -> None:
    code, _, err = _run(capsys, "predict", "x", "--model", "a.gguf", "--set", "llm.model=b.gguf")
    assert code == 2 and "model" not in seen
    assert err == (
        "error: --set llm.model: an option of this command sets it to 'a.gguf' already; "
        "give it once\n"
    )


@pytest.mark.parametrize("old", [False, True])
def test_predict_corpus(seen, tmp_path: Path, capsys, old: bool) -> None:
    where = ["predict"] if old else ["predict", "corpus"]
    out = tmp_path / "out.jsonl"
    code, _, err = _run(
        capsys, *where, "-i", "in.jsonl", "-o", str(out), "--workers", "2", "--engine", "ray",
        "--ray-address", "auto", "--no-progress", "--set", "corpus.batch_size=7",
    )  # fmt: skip
    assert code == 0, err
    got = seen["corpus"]
    assert (got.source, got.workers, got.engine, got.progress) == ("in.jsonl", 2, "ray", False)
    assert (got.config.batch_size, got.config.ray_address) == (7, "auto")
    assert got.spec.config["corpus"]["batch_size"] == 7
    notes = ["note: --ray-address is deprecated; use --set corpus.ray_address=auto"]
    if old:
        notes.insert(0, "note: cdlm predict -i FILE -o OUT is deprecated; use cdlm predict corpus")
    assert _notes(err) == notes


def test_predict_old_corpus_spelling_keeps_its_errors(capsys, tmp_path: Path) -> None:
    code, _, err = _run(
        capsys, "predict", "-i", "x.txt", "-o", str(tmp_path / "o.jsonl"), "--format", "conll"
    )
    assert code == 2
    assert err == "error: --output writes JSON Lines; --format conll prints to stdout only\n"


def test_a_text_named_like_the_subcommand(names_checkpoint: Path, capsys, monkeypatch) -> None:
    """`cdlm predict corpus` is the subcommand; the text "corpus" goes after `--`, or after any
    option (only the first word picks a subcommand)."""
    from cdlm.inference.model import CDLM

    code, _, err = _run(capsys, "predict", "corpus")
    assert code == 2 and err.startswith("error: Missing option '--input'"), err
    real = CDLM.from_pretrained
    models: list[str] = []

    def names_model(cls, name, **kwargs):  # any model name: the shape tagger
        models.append(name)
        return real(names_checkpoint, **kwargs)

    monkeypatch.setattr(CDLM, "from_pretrained", classmethod(names_model))
    for args in (["--", "corpus"], ["--checkpoint", "mine", "corpus"]):
        code, out, err = _run(capsys, "predict", *args)
        assert code == 0, err
        assert [json.loads(line)["text"] for line in out.splitlines()] == ["corpus"]
    assert models == ["default", "mine"]


def test_old_corpus_spelling_runs_for_real(names_checkpoint: Path, tmp_path: Path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "text": "Merkel met Macron ."}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = _run(
        capsys, "predict", "--checkpoint", str(names_checkpoint), "--input", str(source),
        "--output", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert _notes(err) == [
        "note: cdlm predict -i FILE -o OUT is deprecated; use cdlm predict corpus"
    ]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1]


def test_every_command_says_what_it_does_in_one_line() -> None:
    """The first paragraph of every help (a group's, a command's, a plain form's) is one
    line: what `cdlm -h` and the command lists show."""
    from cdlm.cli import _register, app

    _register()

    def helps(command, path: list[str]):
        plain = getattr(command, "plain", None)
        if plain is not None:
            yield path, plain.help
        for name, sub in getattr(command, "commands", {}).items():
            yield [*path, name], sub.help
            yield from helps(sub, [*path, name])

    seen = 0
    for path, text in helps(typer.main.get_command(app), []):
        first = (text or "").strip().split("\n\n")[0]
        assert first and "\n" not in first, (path, first)
        seen += 1
    assert seen >= 20


def test_serve_takes_set(capsys, monkeypatch) -> None:
    """`cdlm serve --set serve.host=0.0.0.0` reaches the config: binding beyond loopback without
    a key is refused in one line, before any model loads."""
    from cdlm.cli import main

    monkeypatch.delenv("CDLM_SERVE_KEY", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--checkpoint", "nowhere", "--set", "serve.host=0.0.0.0"])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "0.0.0.0" in err and "CDLM_SERVE_KEY" in err
