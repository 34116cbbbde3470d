"""``cdlm data download`` against a real HTTP server on 127.0.0.1 that serves a copy of the
upstream files laid out like GitHub's raw paths (CrossNER from ``crossner_dir``; the paper's other
four datasets from ``../shared/data/paper``); faults (500, 404, a corrupted file) are injected by
the server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cdlm.data import paper
from cdlm.data.download import CROSSNER_FILES, download_crossner, sha256_file
from cdlm.data.registry import PAPER_DATASETS, domain_labels, find_data_dir, load_split
from cdlm.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SPLIT_NAMES = ("train", "dev", "test")


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_first: set[str] = set()  # paths answered 500 on their first request
    stall: set[str] = set()  # paths that get no answer until the server shuts down
    closing = threading.Event()
    requests: Counter[str] = Counter()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests[self.path] += 1
        if self.path in self.stall:
            self.closing.wait(60)  # only the client's timeout ends this request
            return
        if self.path in self.fail_first and self.requests[self.path] == 1:
            self.send_error(500, "injected failure")
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def mirror(crossner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the 18 files under ner_data/<domain>/<split>.txt (tests may corrupt it)."""
    root = tmp_path_factory.mktemp("mirror")
    for key in CROSSNER_FILES:
        target = root / "ner_data" / f"{key}.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crossner_dir / f"{key}.txt", target)
    yield root


@contextmanager
def _serving(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 with :class:`_Handler`; yields the base URL."""
    _Handler.fail_first = set()
    _Handler.stall = set()
    _Handler.closing = threading.Event()
    _Handler.requests = Counter()
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Handler.closing.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(mirror: Path) -> Iterator[str]:
    with _serving(mirror) as url:
        yield url


@pytest.fixture(scope="module")
def paper_mirror(paper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both upstream repositories' files at their repository paths under one root (the paths do
    not collide), so one ``--base-url`` serves all four datasets; tests may corrupt it."""
    root = tmp_path_factory.mktemp("paper_mirror")
    for name, spec in paper.DATASETS.items():
        for file in spec.source().files:
            target = root / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paper_dir / name / Path(file.path).name, target)
    return root


@pytest.fixture
def paper_server(paper_mirror: Path) -> Iterator[str]:
    with _serving(paper_mirror) as url:
        yield url


def test_download_verifies_retries_and_resumes(
    server: str, tmp_path: Path, crossner_dir: Path
) -> None:
    _Handler.fail_first = {"/ner_data/politics/dev.txt"}
    dest = tmp_path / "cache"
    report = download_crossner(dest, base_url=server, backoff=0.01, progress=False)
    assert len(report.downloaded) == 18 and report.skipped == []
    assert _Handler.requests["/ner_data/politics/dev.txt"] == 2  # 500, then retried
    for key, (sha, _) in CROSSNER_FILES.items():
        assert sha256_file(dest / f"{key}.txt") == sha
    assert not list(dest.rglob(".*.part"))
    # The result is a data folder the registry finds and reads.
    assert find_data_dir(dest) == dest
    assert load_split("politics", "train", dest) == load_split("politics", "train", crossner_dir)
    # A second run downloads nothing; a deleted file is fetched again.
    (dest / "ai" / "test.txt").unlink()
    again = download_crossner(dest, base_url=server + "/", backoff=0.01, progress=False)
    assert again.downloaded == ["ai/test"] and len(again.skipped) == 17


def test_not_found_fails_at_once(server: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        download_crossner(tmp_path, base_url=server + "/nope", backoff=0.01, progress=False)
    message = str(info.value)
    assert "HTTP 404" in message and "conll2003/train.txt" in message
    assert _Handler.requests["/nope/ner_data/conll2003/train.txt"] == 1  # 404 is not retried


def test_unreachable_server_gives_up_after_retries(tmp_path: Path) -> None:
    with socket.socket() as sock:  # bound, not listening: every connect is refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(DataError, match="failed after 2 tries"):
            download_crossner(tmp_path, base_url=url, retries=2, backoff=0.01, progress=False)


def test_stalled_server_times_out_and_retries(server: str, tmp_path: Path) -> None:
    # The server never answers this file: only the client's timeout can end each try, so two
    # requests and a "timed out" error show the timeout was applied (whatever the machine load).
    _Handler.stall = {"/ner_data/conll2003/train.txt"}
    with pytest.raises(DataError, match=r"conll2003/train.txt failed after 2 tries \(.*timed out"):
        download_crossner(
            tmp_path, base_url=server, retries=2, timeout=2.0, backoff=0.01, progress=False
        )
    assert _Handler.requests["/ner_data/conll2003/train.txt"] == 2


def _download_corrupted(
    path: Path, old: bytes, new: bytes, name: str, dest: Path, url: str
) -> subprocess.CompletedProcess[str]:
    """`cdlm data download NAME` (the real console entry point) while the mirror serves
    ``path`` with ``old`` changed to ``new``; the mirror file is put back after."""
    original = path.read_bytes()
    path.write_bytes(original.replace(old, new, 1))
    try:
        return subprocess.run(
            [sys.executable, "-m", "cdlm", "data", "download", name]
            + ["--dest", str(dest), "--base-url", url],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        path.write_bytes(original)


def test_corrupted_file_cli_exit(server: str, mirror: Path, tmp_path: Path) -> None:
    """Through the real console entry point: one line naming the file, non-zero exit."""
    corrupted = mirror / "ner_data" / "music" / "train.txt"
    dest = tmp_path / "dest"
    proc = _download_corrupted(corrupted, b"B-band", b"B-bend", "crossner", dest, server)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: ") and "checksum mismatch for music/train.txt" in lines[0]
    assert not (dest / "music" / "train.txt").exists()  # nothing unverified is kept
    assert (dest / "politics" / "train.txt").is_file()  # files before it were kept


# --- the paper's other four datasets ------------------------------------------------------


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_paper_download_verifies_converts_and_resumes(
    name: str, paper_server: str, tmp_path: Path
) -> None:
    spec = paper.DATASETS[name]
    first = spec.files[0]
    _Handler.fail_first = {f"/{spec.folder}/{first.name}"}
    report, conversion = paper.download(
        name, tmp_path, base_url=paper_server, backoff=0.01, progress=False
    )
    assert _Handler.requests[f"/{spec.folder}/{first.name}"] == 2  # 500, then retried
    assert report.downloaded == [f"{name}/{f.name}" for f in spec.files] and not report.skipped
    for file in spec.files:  # the upstream files, checked against the hard-coded sums
        assert sha256_file(tmp_path / name / "raw" / file.name) == file.sha256
    assert not list(tmp_path.rglob(".*.part"))
    # Converted into the layout every command reads, found by name under the root.
    for split in SPLIT_NAMES:
        assert len(load_split(name, split, tmp_path)) == conversion.sentences[split] > 0
    assert sum(conversion.repairs[f.name][k] for f in spec.files for k in paper.REPAIR_KINDS) == 0
    # A second run fetches nothing; a deleted file is fetched again.
    (tmp_path / name / "raw" / first.name).unlink()
    again, _ = paper.download(name, tmp_path, base_url=paper_server + "/", progress=False)
    assert again.downloaded == [f"{name}/{first.name}"]
    assert again.skipped == [f"{name}/{f.name}" for f in spec.files[1:]]


# (sentences train/dev/test, entity types) as `cdlm data stats` prints them
PAPER_STATS = {
    "mit-movie": ((8797, 978, 2443), 12),
    "mit-restaurant": ((6894, 766, 1521), 8),
    "bionlp13cg": ((3033, 1003, 1906), 16),
    "bionlp13pc": ((2499, 857, 1695), 4),
}


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_paper_cli_download_then_stats_by_name(
    name: str,
    paper_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cdlm_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """Through the real console command: download into the user cache (an empty one here),
    then `cdlm data stats NAME` finds it by name ($CDLM_DATA_DIR names CrossNER: passed over)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    got = cdlm_cli("data", "download", name, "--base-url", paper_server)
    assert got.returncode == 0, got.stderr
    assert "(checksums verified)" in got.stdout
    assert (
        "IOB repairs on conversion: 0 I- tags turned into B- (I- at sentence start 0, "
        in got.stdout
    )
    assert (tmp_path / "cache" / "cdlm" / "paper" / name / "train.txt").is_file()
    stats = cdlm_cli("data", "stats", name)
    assert stats.returncode == 0, stats.stderr
    # rich table rows: "│ train │ 8797 │ 89655 │ 19171 │ 12 │" (split, sentences, tokens, ...)
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in stats.stdout.splitlines()]
    (train, dev, test), types = PAPER_STATS[name]
    summary = {r[0]: (int(r[1]), int(r[4])) for r in rows if len(r) == 5 and r[0] in SPLIT_NAMES}
    assert summary == {"train": (train, types), "dev": (dev, types), "test": (test, types)}
    # The per-type table lists every type of the data, once.
    names = domain_labels(name, tmp_path / "cache" / "cdlm" / "paper")[1::2]  # the B- labels
    assert len(names) == types
    assert sorted(f"B-{r[0]}" for r in rows if f"B-{r[0]}" in names) == names
    assert (
        f"{train} train / {dev} dev / {test} test sentences, {types} entity types" in stats.stdout
    )
    assert "IOB repairs on conversion: 0 I- tags" in stats.stdout


def test_paper_cli_all_four_by_one_name(
    paper_server: str,
    tmp_path: Path,
    cdlm_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """`cdlm data download paper --dest DIR`: the four datasets from one mirror of both
    repositories; each is then found under --data-dir DIR. An unknown name lists the known."""
    got = cdlm_cli("data", "download", "paper", "--dest", str(tmp_path), "--base-url", paper_server)
    assert got.returncode == 0, got.stderr
    for name in PAPER_DATASETS:
        title = paper.DATASETS[name].title
        assert f"{title} in {tmp_path / name}: " in got.stdout
        assert load_split(name, "test", tmp_path)
    assert got.stdout.count("IOB repairs on conversion: 0 I- tags") == 4
    assert f"use it with --data-dir {tmp_path}" in got.stdout
    stats = cdlm_cli("data", "stats", "bionlp13pc", "--data-dir", str(tmp_path))
    assert stats.returncode == 0 and "2499 train / 857 dev / 1695 test" in stats.stdout
    bad = cdlm_cli("data", "download", "mit-moive")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown dataset 'mit-moive': expected crossner, mit-movie, " in bad.stderr


def test_paper_corrupted_file_refused_and_removed(
    paper_server: str, paper_mirror: Path, tmp_path: Path
) -> None:
    """Through the real console entry point: one line naming the file, exit 2, nothing
    unverified kept, no splits converted (so the name does not resolve)."""
    corrupted = paper_mirror / "data" / "BioNLP13PC-IOB" / "test.tsv"
    dest = tmp_path / "dest"
    proc = _download_corrupted(
        corrupted, b"B-Complex", b"B-Complx", "bionlp13pc", dest, paper_server
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "checksum mismatch for bionlp13pc/raw/test.tsv" in lines[0]
    raw = dest / "bionlp13pc" / "raw"
    assert not (raw / "test.tsv").exists() and not list(raw.glob(".*"))  # refused, temp removed
    assert (raw / "train.tsv").is_file()  # files before it were kept
    assert not list((dest / "bionlp13pc").glob("*.txt"))  # nothing converted
    with pytest.raises(DataError, match="bionlp13pc data not found"):
        load_split("bionlp13pc", "test", dest)
