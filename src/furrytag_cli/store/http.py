"""HTTP download into a partial file: timeouts, bounded retries, resume, progress.

``download`` streams a URL into a ``.part`` file the caller names. When the connection
drops it resumes with ``Range``; a server that ignores ``Range`` (200 instead of 206) or
answers from another offset makes it restart from zero, never append. HTML pages are
never written: they are followed through Google Drive's confirm flow (``gdrive``) or
reported. Ctrl-C leaves the partial file in place for the next call to resume.
"""

import email.message
import errno
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
import urllib3

from furrytag_cli import __version__
from furrytag_cli.core.errors import DownloadError
from furrytag_cli.core.progress import Progress
from furrytag_cli.store import gdrive

_CHUNK = 1 << 16
_MAX_PAGE = 2 << 20  # an interstitial page is small; anything bigger is not one
_MAX_HOPS = 4
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_HTML_START = (b"<!doctype html", b"<html")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]|^[A-Za-z]:|^\.{1,2}$")


@dataclass(frozen=True)
class FetchPolicy:
    """How patient a download is: timeouts (seconds) and retries with backoff."""

    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 5  # failed attempts in a row (without new bytes) before giving up
    backoff: float = 1.0  # the first wait; it doubles with each failure in a row
    max_backoff: float = 30.0


DEFAULT_POLICY = FetchPolicy()


@dataclass(frozen=True)
class Download:
    """A finished download: the file, where its bytes came from, and what it is called."""

    path: Path
    url: str
    size: int
    filename: str | None
    resumed_from: int  # bytes already in the partial file before this call


class _Transient(Exception):
    """A failure worth retrying: network error, 429/5xx, body shorter than announced."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Restart(Exception):
    """The partial file was discarded (server ignored our Range); start over at once."""


def download(
    url: str,
    dest: Path,
    *,
    progress: bool = True,
    label: str | None = None,
    magic: tuple[bytes, ...] = (),
    policy: FetchPolicy = DEFAULT_POLICY,
) -> Download:
    """Download ``url`` into ``dest``, resuming the bytes already there.

    ``magic``: the file must start with one of these prefixes (checked on the first
    bytes, before anything is written). Raises DownloadError when the server refuses,
    sends a page instead of a file, or keeps failing ``policy.retries`` times in a row;
    the partial file is kept then, so a later call resumes it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = _size(dest)
    state = _State()
    failures = 0
    with requests.Session() as session, Progress(None, label or url, "B", enabled=progress) as bar:
        session.headers.update({"User-Agent": f"furrytag/{__version__}"})
        while True:
            before = _size(dest)
            try:
                _attempt(session, url, dest, magic, policy, bar, state)
            except _Restart:
                continue
            except _Transient as exc:
                # The budget is for failures in a row: a slow but moving transfer goes on.
                failures = 1 if _size(dest) > before else failures + 1
                if failures > policy.retries:
                    kept = (
                        f"the {_size(dest)} bytes received are kept in {dest}; run the "
                        f"command again to resume it, or "
                        if _size(dest)
                        else "try again later, or "
                    )
                    raise DownloadError(
                        f"giving up on {url} after {failures} failed attempts in a row ({exc}); "
                        f"{kept}pass `--url` to a mirror"
                    ) from None
                delay = _delay(policy, failures, exc.retry_after)
                if progress:
                    bar.note(f"{exc}; retrying in {delay:.0f}s ({failures}/{policy.retries})")
                time.sleep(delay)
                continue
            return Download(dest, state.file_url or url, _size(dest), state.filename, resumed_from)


@dataclass
class _State:
    """What one download learns across attempts."""

    file_url: str | None = None  # the URL that answered with the file, past any Drive page
    validator: str | None = None  # ETag/Last-Modified, so a changed file is never resumed
    filename: str | None = None


def _attempt(session, url, dest, magic, policy, bar, state) -> None:
    offset = _size(dest)
    resp, first, chunks = _open(session, state.file_url or url, offset, policy, state)
    with resp:
        if resp.status_code == 416:
            total = _content_range(resp.headers.get("Content-Range", ""))[2]
            if offset and total == offset:
                return  # the partial file already holds every byte
            _discard(dest)
            if not offset:
                raise DownloadError(f"{resp.url} answered 416 to a request without Range")
            raise _Restart
        if resp.status_code == 206:
            start, _, total = _content_range(resp.headers.get("Content-Range", ""))
            if start != offset:
                _discard(dest)  # bytes from elsewhere would corrupt the file: start over
                raise _Restart
        else:
            if offset:
                _discard(dest)  # 200 is the whole file again; appending it would corrupt
                offset = 0
            total = _int(resp.headers.get("Content-Length"))
        state.file_url = resp.url
        state.validator = _validator(resp) or state.validator
        state.filename = _filename(resp) or state.filename
        if offset == 0 and magic and first and not first.startswith(magic):
            raise DownloadError(
                f"{resp.url} did not send the expected archive: the file starts with "
                f"{first[:16]!r} (Content-Type {resp.headers.get('Content-Type')!r}); check "
                f"the URL, or pass `--url` to a mirror"
            )
        _check_space(dest, None if total is None else total - offset)
        bar.restart(total, offset)
        _stream(resp, first, chunks, dest, bar)
    size = _size(dest)
    if total is not None and size < total:
        raise _Transient(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _discard(dest)
        raise _Transient(f"received {size} bytes where {total} were announced")


def _open(session, url, offset, policy, state):
    """GET ``url`` from ``offset``, following Drive pages, until a response holds bytes.

    Returns the response, its first chunk (already read, to sniff it) and the rest.
    """
    for _ in range(_MAX_HOPS):
        headers = {"Accept-Encoding": "identity"}  # Range counts bytes as stored
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if state.validator:
                headers["If-Range"] = state.validator
        resp = _get(session, url, headers, policy)
        status = resp.status_code
        chunks = _chunks(resp)
        first = b""
        if status in (200, 206) and not (offset and status == 206):
            first = _read(lambda: next(chunks, b""), resp)
        if _is_html(resp, first):
            page = _page(resp, first, chunks)
            if status in (200, 206):
                url = gdrive.next_url(page, resp.url, session.cookies.items())
                continue
            gdrive.check_refusal(page, resp.url)
        if status in (200, 206, 416):
            return resp, first, chunks
        resp.close()
        reason = f"HTTP {status} {resp.reason or ''}".rstrip() + f" from {resp.url}"
        if status in _RETRY_STATUS:
            raise _Transient(reason, _retry_after(resp))
        hint = {
            401: "the file is not public",
            403: "the file is not public, or the host refuses downloads",
            404: "check the URL",
        }.get(status, "check the URL, or pass `--url` to a mirror")
        raise DownloadError(f"{reason}; {hint}")
    raise DownloadError(
        f"{url} answered with confirmation pages {_MAX_HOPS} times in a row; the page's "
        f"markup may have changed. Download the file in a browser and install it with "
        f"`furrytag download --from-file ZIP NAME`, or pass `--url` to a mirror"
    )


def _get(session, url, headers, policy):
    try:
        return session.get(
            url,
            headers=headers,
            stream=True,
            timeout=(policy.connect_timeout, policy.read_timeout),
        )
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise DownloadError(f"cannot download {url!r}: {exc}") from None
    except requests.exceptions.SSLError as exc:
        raise DownloadError(f"TLS failure talking to {urlsplit(url).hostname}: {exc}") from None
    except requests.RequestException as exc:
        raise _Transient(f"cannot reach {urlsplit(url).hostname}: {_why(exc)}") from None


def _chunks(resp):
    # read1 hands over every byte that arrived before a connection drop; iter_content
    # would drop the last, partly filled chunk, and that many bytes would be fetched again.
    while chunk := resp.raw.read1(_CHUNK):
        yield chunk


def _read(read, resp):
    """Run ``read`` (a body read); a network failure there is transient."""
    try:
        return read()
    except (
        urllib3.exceptions.HTTPError,
        requests.RequestException,
        ConnectionError,
        TimeoutError,
    ) as exc:
        resp.close()
        raise _Transient(f"connection lost while reading {resp.url}: {_why(exc)}") from None


def _why(exc: Exception) -> str:
    """The root cause in a network error's nested message ("Connection refused"…)."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text) or re.search(r"(\w+ timed out)", text)
    return found.group(1).strip() if found else text


def _is_html(resp, first: bytes) -> bool:
    if "html" in resp.headers.get("Content-Type", "").lower():
        return True
    return first.lstrip()[:14].lower().startswith(_HTML_START)


def _page(resp, first: bytes, chunks) -> str:
    """The HTML body (up to a cap); the response is closed afterwards."""
    body = bytearray(first)

    def read_all():
        for chunk in chunks:
            body.extend(chunk)
            if len(body) > _MAX_PAGE:
                break

    with resp:
        _read(read_all, resp)
    return body.decode(resp.encoding or "utf-8", "replace")


def _stream(resp, first: bytes, chunks, dest: Path, bar) -> None:
    def copy():
        with open(dest, "ab") as fh:
            if first:
                fh.write(first)
                bar.advance(len(first))
            for chunk in chunks:
                fh.write(chunk)
                bar.advance(len(chunk))

    try:
        _read(copy, resp)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            _discard(dest)
            raise DownloadError(
                f"the disk holding {dest.parent} filled up during the download; the partial "
                f"file was removed. Free some space, or point FURRYTAG_HOME / --cache-dir "
                f"at a larger disk"
            ) from None
        raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from None


def _check_space(dest: Path, needed: int | None) -> None:
    if needed is None:
        return
    free = shutil.disk_usage(dest.parent).free
    if needed > free:
        _discard(dest)
        raise DownloadError(
            f"not enough free space in {dest.parent}: the download needs {_human(needed)} "
            f"more and {_human(free)} is free. Free some space, or point FURRYTAG_HOME / "
            f"--cache-dir at a larger disk"
        )


def _filename(resp) -> str | None:
    """The file name from Content-Disposition; hostile names are refused outright."""
    value = resp.headers.get("Content-Disposition")
    if not value:
        return None
    header = email.message.Message()
    header["Content-Disposition"] = value
    name = header.get_filename()
    if name is None:
        return None
    name = unquote(name) if "%" in name else name
    if not name or _UNSAFE_NAME.search(name):
        raise DownloadError(
            f"{resp.url} sent an unsafe file name in Content-Disposition: {name!r}; a file "
            f"name must not hold path separators, '..', or control characters. Refusing the "
            f"download; pass `--url` to a trustworthy mirror"
        )
    return name


def _content_range(value: str) -> tuple[int | None, int | None, int | None]:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match:
        start, end, total = match.groups()
        return int(start), int(end), None if total == "*" else int(total)
    unsatisfied = re.fullmatch(r"bytes\s+\*/(\d+)", value.strip())
    return None, None, int(unsatisfied.group(1)) if unsatisfied else None


def _validator(resp) -> str | None:
    etag = resp.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # If-Range needs a strong validator
        return etag
    return resp.headers.get("Last-Modified")


def _retry_after(resp) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _delay(policy: FetchPolicy, failures: int, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, policy.max_backoff)
    base = min(policy.backoff * 2 ** (failures - 1), policy.max_backoff)
    return base * random.uniform(0.75, 1.0)  # jitter: parallel clients do not march in step


def _int(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def _human(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            break
    return f"{n:.1f} {unit}"
