"""A real HTTP server on 127.0.0.1 for tests, with behaviours chosen per route, and a
fake Google Drive built on it.

``LocalServer`` runs ``http.server.ThreadingHTTPServer`` in a thread. A route is a
function from a ``Request`` to a ``Reply``; ``serve_file`` builds the usual one (Range,
dropped connections, ignored Range, missing Content-Length, throttling). Every request
is logged in ``server.requests``.
"""

import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from furrytag_cli.store import gdrive

QUOTA_TEXT = (
    "Too many users have viewed or downloaded this file recently. Please try accessing the "
    "file again later."
)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names

    @property
    def range_start(self) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("range", ""))
        return int(match.group(1)) if match else None


@dataclass
class Reply:
    """What to answer: status, headers, body, and how to misbehave while sending it."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: the body ends when the connection closes
    cut_after: int | None = None  # drop the connection after this many body bytes
    chunk: int = 65536
    delay: float = 0.0  # seconds to wait before each chunk
    # After this many body bytes, wait until ``release`` is set (a client caught mid-body).
    hold_after: int | None = None
    release: threading.Event | None = None


Route = Callable[[Request], Reply]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer("GET")

            def do_HEAD(self) -> None:
                self._answer("HEAD")

            def _answer(self, method: str) -> None:
                parts = urlsplit(self.path)
                request = Request(
                    method,
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                )
                server.requests.append(request)
                route = server.routes.get(parts.path)
                reply = route(request) if route else Reply(404, b"not found")
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a test interrupting it, on purpose)

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    self.close_connection = True
                    return
                body = reply.body if reply.cut_after is None else reply.body[: reply.cut_after]
                for i in range(0, len(body), reply.chunk):
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.hold_after is not None and i == reply.hold_after:
                        reply.release.wait(timeout=120)
                    self.wfile.write(body[i : i + reply.chunk])
                    self.wfile.flush()
                if reply.cut_after is not None:
                    self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, handler: Route) -> str:
        """Answer ``path`` with ``handler``; return its full URL."""
        self.routes[path] = handler
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> "LocalServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def file_reply(
    request: Request,
    body: bytes,
    *,
    ranges: bool = True,
    range_offset: int = 0,
    content_type: str = "application/zip",
    headers: dict[str, str] | None = None,
    **reply: object,
) -> Reply:
    """Serve ``body``, honouring ``Range`` when ``ranges`` (from ``start + range_offset``,
    to simulate a server that answers from the wrong place)."""
    headers = {"Content-Type": content_type, "ETag": '"v1"', **(headers or {})}
    start = request.range_start
    if ranges and start is not None:
        start += range_offset
        if start >= len(body):
            return Reply(416, b"", {"Content-Range": f"bytes */{len(body)}"})
        headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        return Reply(206, body[start:], headers, **reply)
    return Reply(200, body, headers, **reply)


def serve_file(
    server: LocalServer,
    path: str,
    body: bytes,
    *,
    cuts: Sequence[int] = (),
    **options: object,
) -> str:
    """Serve ``body`` at ``path``; the n-th request is cut after ``cuts[n]`` body bytes.

    Other ``options`` go to ``file_reply`` (ranges, range_offset, content_length, delay…).
    """
    count = [0]

    def handler(request: Request) -> Reply:
        n = count[0]
        count[0] += 1
        cut = cuts[n] if n < len(cuts) else None
        return file_reply(request, body, cut_after=cut, **options)

    return server.route(path, handler)


class FakeDrive:
    """Google Drive's download endpoints as they behave today, on a local server.

    ``/uc`` answers the virus-scan warning page; its form points at ``/download`` with a
    fresh uuid, which ``/download`` insists on. ``mode`` selects older or failing pages.
    """

    FILE_ID = "1n-qEMXU86G8A_UEpZ9_CmAPWdBkMO_zY"

    def __init__(self, server: LocalServer, body: bytes, mode: str = "form", cuts=()):
        self.server, self.body, self.mode = server, body, mode
        self.uuids: list[str] = []
        self.cuts = list(cuts)
        server.route("/uc", self.uc)
        server.route("/download", self.usercontent)

    @property
    def url(self) -> str:
        return gdrive.drive_url(self.FILE_ID, base=self.server.url("/uc"))

    def _file(self, request: Request) -> Reply:
        return file_reply(
            request,
            self.body,
            content_type="application/x-zip-compressed",
            headers={"Content-Disposition": 'attachment; filename="model.zip"'},
            cut_after=self.cuts.pop(0) if self.cuts else None,
        )

    def uc(self, request: Request) -> Reply:
        if request.query.get("id") != self.FILE_ID:
            return Reply(404, b"no such file")
        if self.mode == "quota":
            return _page(
                '<p class="uc-error-caption">Sorry, you can\'t view or download this file at '
                f'this time.</p><p class="uc-error-subcaption">{QUOTA_TEXT}</p>'
            )
        if self.mode == "link":
            if request.query.get("confirm") == "AbCd":
                return self._file(request)
            return _page(
                f'<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd'
                f'&amp;id={self.FILE_ID}">Download anyway</a>'
            )
        if self.mode == "cookie":
            if request.query.get(
                "confirm"
            ) == "t0k3n" and "download_warning" in request.headers.get("cookie", ""):
                return self._file(request)
            reply = _page("<p>Google Drive can't scan this file for viruses.</p>")
            reply.headers["Set-Cookie"] = "download_warning_13058876669334088843=t0k3n; Path=/"
            return reply
        self.uuids.append(str(uuid.uuid4()))
        inputs = {"id": self.FILE_ID, "export": "download", "confirm": "t", "uuid": self.uuids[-1]}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in inputs.items())
        return _page(
            '<p class="uc-warning-subcaption">Google Drive can\'t scan this file for viruses.'
            f'</p><form id="download-form" action="{self.server.url("/download")}" '
            f'method="get"><input type="submit" id="uc-download-link" class="goog-inline-block'
            f' jfk-button jfk-button-action" value="Download anyway"/>{hidden}</form>'
        )

    def usercontent(self, request: Request) -> Reply:
        expected = {"id": self.FILE_ID, "export": "download", "confirm": "t"}
        if (
            any(request.query.get(k) != v for k, v in expected.items())
            or request.query.get("uuid") not in self.uuids[-1:]
        ):
            return Reply(400, b"bad confirm request")
        return self._file(request)


def _page(body: str) -> Reply:
    html = (
        f"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>"
        f"</head><body>{body}</body></html>"
    )
    return Reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})
