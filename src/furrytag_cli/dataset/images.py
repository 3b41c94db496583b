"""Downloading a dataset's images from e621 (or a mirror) into a content-addressed tree.

Originals land in ``<data>/images/ab/cd/<md5>.<ext>`` and are checked against the md5
in the manifest; downsized samples (``sample=True``) in ``<data>/samples/ab/cd/<md5>.jpg``
(e621 publishes no md5 for them, so they are checked by decoding). A file is moved into
the tree only once checked, so a file that is there is complete and a rerun skips it.
Requests are rate-limited across all workers; failures are retried with exponential
backoff and the ones that remain are listed in ``<data>/fetch-failures.jsonl``.
"""

import hashlib
import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.core.progress import Progress
from furrytag_cli.dataset.build import file_url, sample_url
from furrytag_cli.dataset.layout import (
    DEFAULT_USER_AGENT,
    E621_BASE_URL,
    SPLITS,
    original_path,
    sample_path,
)
from furrytag_cli.dataset.manifest import ManifestEntry, iter_manifest

FAILURES = "fetch-failures.jsonl"
# This many images in a row without a proper answer (refused, timed out, 5xx, 429) means
# the server is out of reach: stop instead of failing every remaining post one by one.
GIVE_UP_AFTER = 25
_CHUNK = 1 << 16
_MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class FetchOptions:
    """Where images come from and how politely they are fetched."""

    base_url: str = E621_BASE_URL
    sample: bool = False
    user_agent: str = DEFAULT_USER_AGENT
    rate: float = 2.0
    concurrency: int = 3
    retries: int = 4
    backoff: float = 2.0
    timeout: float = 60.0
    splits: tuple[str, ...] = SPLITS
    recheck: bool = False

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"--base-url must start with http:// or https://; received {self.base_url!r}"
            )
        if not self.user_agent.strip():
            raise ConfigError("--user-agent is empty; e621 asks every client to name itself")
        checks = {
            "--rate": self.rate >= 0,
            "--concurrency": self.concurrency >= 1,
            "--retries": self.retries >= 0,
            "--timeout": self.timeout > 0,
            "backoff": self.backoff >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                value = getattr(self, name.lstrip("-"))
                raise ConfigError(f"{name} is out of range; received {value}")
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown:
            raise ConfigError(
                f"unknown split(s) {', '.join(unknown)}; splits are {', '.join(SPLITS)}"
            )


@dataclass
class FetchReport:
    """What a fetch run did."""

    downloaded: int = 0
    present: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: Path | None = None


def fetch_images(
    data_dir: Path, options: FetchOptions | None = None, *, progress: bool = False
) -> FetchReport:
    """Download the images the manifest names that are not already stored and verified."""
    data_dir = Path(data_dir)
    options = options or FetchOptions()
    started = time.perf_counter()
    report = FetchReport()
    todo = 0
    for entry in iter_manifest(data_dir, options.splits):
        if _stored(data_dir, entry, options):
            report.present += 1
        else:
            todo += 1
    fetcher = _Fetcher(data_dir, options)
    bar = Progress(todo, "fetch", "img", enabled=progress and bool(todo), failures=True).start()
    failures: list[dict] = []
    in_a_row = 0  # images in a row the server did not answer for

    def settle(done) -> None:
        nonlocal in_a_row
        for future in done:
            entry, size, error, unreachable = future.result()
            if error is None:
                report.downloaded += 1
                report.bytes += size
            else:
                failures.append({"id": entry.id, "md5": entry.md5, **error})
            in_a_row = in_a_row + 1 if unreachable else 0
            bar.set(bar.completed + 1, failed=len(failures))

    pool = ThreadPoolExecutor(options.concurrency, thread_name_prefix="fetch")
    gave_up = 0
    try:
        pending = set()
        for entry in iter_manifest(data_dir, options.splits):
            # The first pass rechecked (and removed) stored files already; stat only now.
            if _stored(data_dir, entry, options, recheck=False):
                continue
            pending.add(pool.submit(fetcher.fetch, entry))
            # A bounded window keeps memory flat on manifests of millions of posts.
            if len(pending) >= 4 * options.concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                settle(done)
            if in_a_row >= GIVE_UP_AFTER:
                gave_up = in_a_row
                break
        settle(wait(pending).done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report.failed = len(failures)
    report.failures = _write_failures(data_dir, failures)
    report.seconds = time.perf_counter() - started
    if gave_up:
        raise DatasetError(
            f"stopped: {gave_up} images in a row got no answer (last: {failures[-1]['error']}); "
            f"check that {options.base_url} is reachable, then run the same command again. "
            f"The {report.downloaded} images fetched are kept; failures are listed in {report.failures}"
        )
    return report


def _stored(
    data_dir: Path, entry: ManifestEntry, options: FetchOptions, recheck: bool | None = None
) -> bool:
    original = original_path(data_dir, entry.md5, entry.ext)
    if original.is_file():
        if (options.recheck if recheck is None else recheck) and _md5_of(original) != entry.md5:
            original.unlink()
            return False
        return True
    return options.sample and sample_path(data_dir, entry.md5).is_file()


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_failures(data_dir: Path, failures: list[dict]) -> Path | None:
    path = data_dir / FAILURES
    if not failures:
        path.unlink(missing_ok=True)
        return None
    failures.sort(key=lambda f: f["id"])
    path.write_text("".join(json.dumps(f) + "\n" for f in failures), encoding="utf-8")
    return path


class _RateLimit:
    """Spaces request starts at least ``1 / rate`` seconds apart across threads."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class _NotFound(Exception):
    pass


class _Retryable(Exception):
    """A failure worth another try; ``unreachable``: the server did not answer properly
    (refused, timed out, 5xx or 429), as opposed to a bad file."""

    def __init__(self, reason: str, delay: float | None = None, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.delay, self.unreachable = delay, unreachable


class _Failed(Exception):
    def __init__(self, reason: str, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.unreachable = unreachable


class _Fetcher:
    """Fetches one post's image; one requests.Session per worker thread."""

    def __init__(self, data_dir: Path, options: FetchOptions) -> None:
        self.data_dir = data_dir
        self.options = options
        self._limit = _RateLimit(options.rate)
        self._local = threading.local()

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
            session.headers["User-Agent"] = self.options.user_agent
        return session

    def fetch(self, entry: ManifestEntry) -> tuple[ManifestEntry, int, dict | None, bool]:
        """(entry, bytes stored, None, False) on success, else (entry, 0, {"url", "error"},
        whether the server was out of reach)."""
        base = self.options.base_url
        original = (
            file_url(entry.md5, entry.ext, base),
            original_path(self.data_dir, entry.md5, entry.ext),
            entry.md5,
        )
        # e621 has samples only of large images; for the others the original is the sample.
        targets = (
            [(sample_url(entry.md5, base), sample_path(self.data_dir, entry.md5), None), original]
            if self.options.sample
            else [original]
        )
        for url, dest, md5 in targets:
            try:
                return entry, self._download(url, dest, md5), None, False
            except _NotFound:
                error = "HTTP 404 Not Found"
            except _Failed as exc:
                return entry, 0, {"url": url, "error": str(exc)}, exc.unreachable
        return entry, 0, {"url": url, "error": error}, False

    def _download(self, url: str, dest: Path, md5: str | None) -> int:
        import requests

        options = self.options
        reason, unreachable = "", False
        for attempt in range(options.retries + 1):
            self._limit.wait()
            try:
                return self._get(url, dest, md5)
            except _Retryable as exc:
                reason, delay, unreachable = str(exc), exc.delay, exc.unreachable
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                reason, delay, unreachable = f"{type(exc).__name__}: {exc}", None, True
            except requests.RequestException as exc:
                # A bad URL, a redirect loop, an undecodable body: trying again won't help.
                raise _Failed(f"{type(exc).__name__}: {exc}") from None
            if attempt < options.retries:
                time.sleep(
                    min(_MAX_BACKOFF, delay if delay is not None else options.backoff * 2**attempt)
                )
        raise _Failed(f"{reason} (gave up after {options.retries + 1} attempts)", unreachable)

    def _get(self, url: str, dest: Path, md5: str | None) -> int:
        import requests

        timeout = (min(10.0, self.options.timeout), self.options.timeout)
        with self._session().get(url, stream=True, timeout=timeout) as response:
            status = response.status_code
            if status == 404:
                raise _NotFound()
            if status == 429 or status >= 500:
                raise _Retryable(
                    f"HTTP {status} {response.reason}",
                    _retry_after(response.headers.get("Retry-After")),
                    unreachable=True,
                )
            if status != 200:
                raise _Failed(f"HTTP {status} {response.reason}")
            part = dest.with_name(dest.name + ".part")
            digest = hashlib.md5()
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with part.open("wb") as sink:
                    for chunk in response.iter_content(_CHUNK):
                        digest.update(chunk)
                        sink.write(chunk)
            except BaseException as exc:
                part.unlink(missing_ok=True)
                # requests' errors are OSErrors too: a dropped connection is retried by the
                # caller, only a failing disk is the user's to fix.
                if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
                    raise DatasetError(f"cannot write {part}: {exc}; check the disk") from None
                raise
        problem = _check(part, md5, digest.hexdigest())
        if problem:
            part.unlink(missing_ok=True)
            raise _Retryable(problem)
        size = part.stat().st_size
        os.replace(part, dest)
        return size


def _check(path: Path, md5: str | None, received: str) -> str | None:
    """Why a downloaded file is not the one wanted, or None when it is."""
    if md5 is not None:
        return None if received == md5 else f"md5 mismatch: expected {md5}, received {received}"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        return f"not a readable image ({exc})"
    return None


def _retry_after(header: str | None) -> float | None:
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None
