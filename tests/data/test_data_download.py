"""``cdlm data download crossner`` against a real HTTP server on 127.0.0.1 that serves a copy of
the CrossNER files laid out like GitHub's raw paths; faults (500, 404, a corrupted file) are
injected by the server."""

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdlm.data.download import CROSSNER_FILES, download_crossner, sha256_file
from cdlm.data.registry import find_data_dir, load_split
from cdlm.errors import DataError

REPO = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def server(mirror: Path) -> Iterator[str]:
    _Handler.fail_first = set()
    _Handler.stall = set()
    _Handler.closing = threading.Event()
    _Handler.requests = Counter()
    handler = functools.partial(_Handler, directory=str(mirror))
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


def test_corrupted_file_cli_exit(server: str, mirror: Path, tmp_path: Path) -> None:
    """Through the real console entry point: one line naming the file, non-zero exit."""
    corrupted = mirror / "ner_data" / "music" / "train.txt"
    original = corrupted.read_bytes()
    corrupted.write_bytes(original.replace(b"B-band", b"B-bend", 1))
    dest = tmp_path / "dest"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cdlm", "data", "download", "crossner"]
            + ["--dest", str(dest), "--base-url", server],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        corrupted.write_bytes(original)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: ") and "checksum mismatch for music/train.txt" in lines[0]
    assert not (dest / "music" / "train.txt").exists()  # nothing unverified is kept
    assert (dest / "politics" / "train.txt").is_file()  # files before it were kept
