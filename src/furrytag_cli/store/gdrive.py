"""Google Drive's download flow: share links, and the HTML pages Drive answers with.

``GET https://drive.google.com/uc?export=download&id=ID`` answers a small file with its
bytes. For a large file it answers 200 with a virus-scan warning page whose
``<form id="download-form" action="https://drive.usercontent.google.com/download">``
hidden inputs (id, export, confirm, uuid, …) must be sent back as a GET query. Older
pages carry a ``/uc?export=download&confirm=...`` link or set a ``download_warning_*``
cookie whose value is the confirm token. When Drive refuses (quota exceeded, no access),
the page explains why in the element with class ``uc-error-subcaption``.
"""

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

from furrytag_cli.core.errors import DownloadError

DRIVE_UC_URL = "https://drive.google.com/uc"
_SHARE_LINK = re.compile(r"/file/d/([A-Za-z0-9_-]{10,})")
_DRIVE_HOSTS = ("drive.google.com", "docs.google.com")
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_MIRROR_HINT = (
    "download it in a browser and install it with `furrytag download --from-file ZIP NAME`, "
    "or pass `--url` to a mirror"
)


def drive_url(file_id: str, base: str = DRIVE_UC_URL) -> str:
    """The direct-download URL of the Drive file ``file_id``."""
    return f"{base}?{urlencode({'export': 'download', 'id': file_id})}"


def normalize_url(url: str, base: str = DRIVE_UC_URL) -> str:
    """Turn a Drive share link (``/file/d/ID/view``, ``open?id=ID``) into a download URL.

    Any other URL is returned unchanged.
    """
    parts = urlsplit(url)
    if parts.hostname not in _DRIVE_HOSTS:
        return url
    match = _SHARE_LINK.search(parts.path)
    if match:
        return drive_url(match.group(1), base)
    ids = parse_qs(parts.query).get("id")
    if parts.path.rstrip("/") in ("/open", "/uc") and ids:
        return drive_url(ids[0], base)
    return url


class _Page(HTMLParser):
    """The parts of a Drive page that matter: forms, confirm links, error text, title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        self.confirm_links: list[str] = []
        self.errors: list[str] = []
        self.title = ""
        self._form: str | None = None
        self._error_depth = 0  # >0 while inside a uc-error-subcaption element
        self._error_text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs, opens=tag not in _VOID)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs, opens=False)

    def _element(self, tag: str, attrs: list[tuple[str, str | None]], opens: bool) -> None:
        attr = {k: v or "" for k, v in attrs}
        if self._error_depth:
            self._error_depth += opens
        elif opens and "uc-error-subcaption" in attr.get("class", "").split():
            self._error_depth = 1
            self._error_text = []
        if tag == "form":
            self._form = attr.get("id", "")
            self.forms[self._form] = (attr.get("action", ""), [])
        elif tag == "input" and self._form is not None and attr.get("name"):
            self.forms[self._form][1].append((attr["name"], attr.get("value", "")))
        elif tag == "a" and "confirm=" in attr.get("href", ""):
            self.confirm_links.append(attr["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "title":
            self._in_title = False
        if self._error_depth:
            self._error_depth -= 1
            if not self._error_depth:
                self.errors.append(" ".join("".join(self._error_text).split()))

    def handle_data(self, data: str) -> None:
        if self._error_depth:
            self._error_text.append(data)
        if self._in_title:
            self.title += data

    def close(self) -> None:
        super().close()
        if self._error_depth:  # an unclosed error element still says why Drive refused
            self.errors.append(" ".join("".join(self._error_text).split()))
            self._error_depth = 0


def next_url(page: str, page_url: str, cookies: Iterable[tuple[str, str]]) -> str:
    """Where to go after Drive answered ``page_url`` with the HTML ``page``.

    ``cookies`` are the (name, value) pairs the session holds. Raises DownloadError with
    Google's own words when Drive refuses, and names the URL when the page is not
    recognised (it is never retried: a changed page will not change back on retry).
    """
    parsed = _parse(page)
    _raise_refusal(parsed, page_url)
    form = parsed.forms.get("download-form")
    if form and form[0]:
        action, inputs = form
        return _with_query(urljoin(page_url, action), inputs, page_url)
    if parsed.confirm_links:
        return _checked(urljoin(page_url, parsed.confirm_links[0]), page_url)
    for name, value in cookies:
        if name.startswith("download_warning") and value:
            return _with_query(page_url, [("confirm", value)], page_url)
    title = " ".join(parsed.title.split())
    raise DownloadError(
        f"received an HTML page{f' titled {title!r}' if title else ''} instead of a file "
        f"from {page_url}, and it is not a Google Drive page furrytag knows how to follow "
        f"(the file may be private, or the page's markup changed); {_MIRROR_HINT}"
    )


def check_refusal(page: str, page_url: str) -> None:
    """Raise DownloadError with Google's own words when ``page`` is a Drive refusal."""
    _raise_refusal(_parse(page), page_url)


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def _raise_refusal(parsed: _Page, page_url: str) -> None:
    if parsed.errors:
        raise DownloadError(
            f"Google Drive refused {page_url}: {parsed.errors[0]} To get the model anyway, "
            f"{_MIRROR_HINT}"
        )


def _with_query(url: str, pairs: list[tuple[str, str]], page_url: str) -> str:
    """``url`` with ``pairs`` set in its query (replacing same-named parameters)."""
    parts = urlsplit(url)
    names = {name for name, _ in pairs}
    kept = [(k, v) for k, v in _query_pairs(parts.query) if k not in names]
    url = urlunsplit(parts._replace(query=urlencode(kept + pairs)))
    return _checked(url, page_url)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return [(k, v) for k, values in parse_qs(query, keep_blank_values=True).items() for v in values]


def _checked(url: str, page_url: str) -> str:
    """Refuse to follow a page from HTTPS to plain HTTP or to a non-HTTP scheme."""
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https") or (scheme == "http" and page_url.startswith("https:")):
        raise DownloadError(
            f"the page at {page_url} points the download to {url!r}, which is not a safe "
            f"HTTPS link; refusing to follow it. {_MIRROR_HINT[0].upper()}{_MIRROR_HINT[1:]}"
        )
    return url
