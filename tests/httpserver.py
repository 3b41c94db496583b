"""A real HTTP server on 127.0.0.1 for tests, with behaviours chosen per route.

``LocalServer`` runs ``http.server.ThreadingHTTPServer`` in a thread. A route is a
function from a ``Request`` to a ``Reply``; ``serve_file`` builds the usual one (Range,
dropped connections, ignored Range, missing Content-Length, throttling). Every request
is logged in ``server.requests``.
"""

import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


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


Route = Callable[[Request], Reply]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Request(
                    "GET", parts.path, dict(parse_qsl(parts.query)),
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
                body = reply.body if reply.cut_after is None else reply.body[:reply.cut_after]
                for i in range(0, len(body), reply.chunk):
                    if reply.delay:
                        time.sleep(reply.delay)
                    self.wfile.write(body[i:i + reply.chunk])
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
