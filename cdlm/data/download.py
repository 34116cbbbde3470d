"""``cdlm data download``: fetch dataset files from a pinned commit of a GitHub repository.

One implementation for every dataset: a :class:`Source` table names the repository, the commit
and, per file, its path there, its local name, SHA-256 and size. CrossNER (``CROSSNER``: the 18
labelled splits of github.com/zliucr/CrossNER) is one such table; the CDLM paper's other
datasets (:mod:`cdlm.data.paper`) are four more. Pinning the commit means the data cannot change
under a published number; the files are checked against the hard-coded sums and sizes. Each file is
streamed into a temp file beside its destination and renamed into place only when its checksum
matches, so an interrupted or corrupted download never leaves a file the reader would accept.
Files already present with the right checksum are skipped: re-running resumes.

Transient failures (connection errors, timeouts, truncated bodies, HTTP 429 and 5xx) are retried
with exponential backoff (tenacity); a 404 or a checksum mismatch is not transient and fails at
once with one line naming the file. stdlib ``urllib`` is enough for a few static files, so no
HTTP client dependency is added.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cdlm.errors import DataError
from cdlm.results import atomic_file

CROSSNER_REPO = "zliucr/CrossNER"
CROSSNER_COMMIT = "2e7ba2a7798c961e3f29fbc51252c5a8d40224bf"
CROSSNER_BASE_URL = f"https://raw.githubusercontent.com/{CROSSNER_REPO}/{CROSSNER_COMMIT}"

# "<domain>/<split>" -> (sha256, size in bytes) of ner_data/<domain>/<split>.txt at the commit.
CROSSNER_FILES: dict[str, tuple[str, int]] = {
    "conll2003/train": (
        "098791b165293cac55aa60ea5395b48ed441bc962c00278aa4789dce68624bf8",
        1821749,
    ),
    "conll2003/dev": ("c8869cec4f419e7b635843aae285990581bf4685b7193c81696d87e1939f0c63", 456172),
    "conll2003/test": ("18d9d738defc506ebc5d6748cb580245327ef5c4357b026d7d9ba7c6e55fe841", 416873),
    "politics/train": ("1d8be31abb58463349496fe21b13d70114cf015294a9ff9cce77af9b83e8aa84", 97283),
    "politics/dev": ("4f1f30eb832f4c5fe474f67ca45e875d863bddf0bbe432262d272ef13639fa8f", 300968),
    "politics/test": ("05cadc5e129d394f7f92b4a052cf4b6ea4c60878d32a833e500cf046c297455f", 325917),
    "science/train": ("8f6a26096cc7be6790b5790bf5f5b5c8928d8b73d4632e7d45dc8bffad0504ac", 78701),
    "science/dev": ("87ec141c7b41b3b52ec861737c4030d65c6e53954ed3d8106baca8603bbf8f24", 186031),
    "science/test": ("3616d59d4d2b9dbf4c1126f8d8ba47ff97886223c95f93649bfd527343e64ced", 220459),
    "music/train": ("3774c38e0ebbeb4b98dbfae137071e4911e8764cdb7f247599009841f68d9fb5", 40997),
    "music/dev": ("e256f1949df52a61a3bb60095a0f41c1060843f1014b0f3d22d8371611b72e78", 164737),
    "music/test": ("c66e345f959ac65593f76c6b1bd8c6d75f2a6f0bc197389b2e6700d101fd094c", 208331),
    "literature/train": ("0647e403a85040742c2f4041cf002146a81aa2e13adda19d0e82a8bcd493c18b", 36623),
    "literature/dev": ("99281a51943cf7e3c2a58b3dc45c0e5ab6d329624ebf2ba6b4801c428396162f", 142501),
    "literature/test": ("77267f8b3e8afe993865c64cfc605f65671f6a0ac9cba65de970f12180fed20e", 155256),
    "ai/train": ("484217a660f52927bd5157507c22fc103b36306364329f62f80fc8acb897b187", 40202),
    "ai/dev": ("b47ffda6de5901a454a873feac1bebe782e54ce7edf9deb729cab3d769212eee", 114516),
    "ai/test": ("7595ad386e0a98067100fe47f86811b38867a236011fee97cfaa90f778c37bcf", 134455),
}

_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file of a :class:`Source`: where it is upstream, where it goes, what it must be."""

    key: str  # what reports list, e.g. "politics/dev"
    path: str  # path inside the repository at the commit
    local: str  # path under the destination folder (also names the file in errors)
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """A pinned set of files of one GitHub repository."""

    title: str  # for the progress bar, e.g. "CrossNER"
    repo: str  # "owner/name"
    commit: str
    files: tuple[RemoteFile, ...]

    @property
    def base_url(self) -> str:
        """The raw-file root of the pinned commit; a file is at ``{base_url}/{path}``."""
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}"


CROSSNER = Source(
    "CrossNER",
    CROSSNER_REPO,
    CROSSNER_COMMIT,
    tuple(
        RemoteFile(key, f"ner_data/{key}.txt", f"{key}.txt", sha, size)
        for key, (sha, size) in CROSSNER_FILES.items()
    ),
)


class _Transient(Exception):
    """A failure worth retrying (network hiccup, 429/5xx, truncated body)."""


@dataclass(frozen=True)
class DownloadReport:
    dest: Path
    downloaded: list[str]  # keys ("<domain>/<split>" for CrossNER) fetched this time
    skipped: list[str]  # already present with the right checksum


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_valid(path: Path, sha: str, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size and sha256_file(path) == sha


def _fetch_once(url: str, target: Path, name: str, sha: str, timeout: float, advance) -> None:
    """Stream ``url`` into a temp file, check it, and rename it onto ``target``."""
    received = 0
    try:
        digest = hashlib.sha256()
        with atomic_file(target, binary=True, suffix=".part") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    for chunk in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        advance(len(chunk))
            except urllib.error.HTTPError as exc:
                if exc.code == 429 or exc.code >= 500:
                    raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
                raise DataError(f"{url}: HTTP {exc.code} {exc.reason} for {name}") from None
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise _Transient(f"{type(exc).__name__}: {reason}") from None
            got = digest.hexdigest()
            if got != sha:
                raise DataError(
                    f"{url}: checksum mismatch for {name} (sha256 {got[:12]}..., expected "
                    f"{sha[:12]}..., {received} bytes); the file was not saved"
                )
    except BaseException:
        advance(-received)  # the bytes of a failed try do not count towards progress
        raise


def download_crossner(
    dest: Path | str | None = None,
    *,
    base_url: str = CROSSNER_BASE_URL,
    force: bool = False,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> DownloadReport:
    """Download the labelled CrossNER splits into ``dest`` (default: the user cache folder).

    ``base_url`` replaces ``https://raw.githubusercontent.com/zliucr/CrossNER/<commit>`` (a mirror
    or a test server); files are read from ``{base_url}/ner_data/<domain>/<split>.txt``.
    ``retries`` is the number of tries per file; waits grow as ``backoff * 2**n`` seconds.
    """
    from cdlm.data.registry import user_cache_dir

    dest = Path(dest).expanduser() if dest is not None else user_cache_dir()
    return fetch(
        CROSSNER,
        dest,
        base_url=base_url,
        force=force,
        retries=retries,
        timeout=timeout,
        backoff=backoff,
        progress=progress,
    )


def fetch(
    source: Source,
    dest: Path,
    *,
    base_url: str | None = None,
    force: bool = False,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> DownloadReport:
    """Download ``source``'s files into ``dest`` (each to ``dest/<local>``), checked.

    ``base_url`` replaces ``source.base_url`` (a mirror or a test server serving the
    repository's files at their paths); see :func:`download_crossner` for the other arguments.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    base_url = (base_url or source.base_url).rstrip("/")
    todo: list[tuple[RemoteFile, Path]] = []
    skipped: list[str] = []
    for file in source.files:
        target = dest / file.local
        if not force and _is_valid(target, file.sha256, file.size):
            skipped.append(file.key)
        else:
            todo.append((file, target))

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    total = sum(file.size for file, _ in todo)
    # Progress goes to stderr so stdout carries only the summary line.
    console = Console(stderr=True)
    with Progress(
        *columns, console=console, disable=not progress or not todo, transient=True
    ) as bar:
        task = bar.add_task(source.title, total=total)
        for file, target in todo:
            url = f"{base_url}/{file.path}"
            bar.update(task, description=f"{source.title} {file.key}")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"{target.parent}: cannot create folder ({exc.strerror})") from None
            retrying = Retrying(
                stop=stop_after_attempt(max(1, retries)),
                wait=wait_exponential(multiplier=backoff, max=30 * backoff),
                retry=retry_if_exception_type(_Transient),
                reraise=False,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        _fetch_once(
                            url,
                            target,
                            file.local,
                            file.sha256,
                            timeout,
                            lambda n: bar.advance(task, n),
                        )
            except RetryError as exc:
                last = exc.last_attempt.exception()
                raise DataError(
                    f"{url}: download of {file.local} failed after {max(1, retries)} tries ({last})"
                ) from None
    return DownloadReport(dest, [file.key for file, _ in todo], skipped)
