"""`--engine ray` on a local Ray started here (2 CPUs): the same output file as the local
engine, resumed from a partial, torn output (ids repeat), records the model cannot take answered
alone, and a bad line named by file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cdlm.config import CorpusConfig
from cdlm.data.resume import sidecar_path
from cdlm.errors import DataError
from cdlm.inference.corpus import PredictorSpec, predict_corpus

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'cdlm[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_writes_what_the_local_engine_writes(
    small_crossner: Path, tiny_checkpoint: Path, tmp_path: Path, local_ray
) -> None:
    from cdlm.data.registry import load_split

    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as fh:
        for k, s in enumerate(load_split("politics", "train", small_crossner)[:24]):
            text = " ".join(s.tokens) if k != 13 else "cut \ud800 emoji"
            record = {"text": text, "n": k}
            if k % 3:  # some records have ids (each twice), some do not
                record["id"] = k // 2
            fh.write(json.dumps(record) + "\n")
    # small batches and read chunks: several read tasks and blocks, both actors busy
    config = CorpusConfig(batch_size=4, ray_chunk_bytes=700)
    spec = PredictorSpec(model=str(tiny_checkpoint))
    local = tmp_path / "local.jsonl"
    predict_corpus(str(corpus), local, spec, fmt="jsonl", config=config, progress=False)
    lines = local.read_bytes().splitlines(keepends=True)

    out = tmp_path / "ray.jsonl"
    out.write_bytes(b"".join(lines[:10]) + lines[10][:20])  # an interrupted run, torn
    shutil.copy(sidecar_path(local), sidecar_path(out))  # ... of the same input and options
    result = predict_corpus(
        str(corpus), out, spec, fmt="jsonl", engine="ray", workers=2, config=config,
        progress=False,
    )  # fmt: skip
    assert (result.already, result.skipped, result.written) == (10, 10, 14)
    assert out.read_bytes() == local.read_bytes()
    assert result.errors == 1 and "error" in json.loads(lines[13])  # the surrogate, alone
    assert sum("entities" in json.loads(line) for line in lines) == 23

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(lines[:3]) + b'{"id": "x"}\n')
    with pytest.raises(DataError, match=rf"^{bad}:4: field 'text': expected a string"):
        predict_corpus(str(bad), tmp_path / "o.jsonl", spec, fmt="jsonl", engine="ray",
                       workers=1, config=config, progress=False)  # fmt: skip
