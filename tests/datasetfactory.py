"""Helpers for the dataset tests: a real local HTTP file server, small synthetic datasets."""

import functools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from furrytag_cli.dataset.build import build_dataset
from furrytag_cli.dataset.synth import write_synthetic
from furrytag_cli.model.categories import CategorySet

FIXTURE_EXPORT = Path(__file__).parent / "fixtures" / "e621"

# A behaviour handles a request itself (returns True) or lets the file be served (False).
Behaviour = Callable[[SimpleHTTPRequestHandler], bool]


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("User-Agent")))
        behaviour = self.server.behaviours.get(self.path)
        if behaviour is None or not behaviour(self):
            super().do_GET()

    def log_message(self, *args) -> None:
        pass


class FileServer(ThreadingHTTPServer):
    """Serves a folder on 127.0.0.1; ``behaviours`` make chosen paths misbehave."""

    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        # Clients that time out on the slow path close their socket; that is expected.
        pass


@contextmanager
def serve(root: Path) -> Iterator[FileServer]:
    server = FileServer(root)
    # A short poll interval: shutting the server down waits for one poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def status(code: int) -> Behaviour:
    def behaviour(handler) -> bool:
        handler.send_error(code)
        return True

    return behaviour


def delay(seconds: float) -> Behaviour:
    def behaviour(handler) -> bool:
        time.sleep(seconds)
        return False

    return behaviour


def body(data: bytes) -> Behaviour:
    def behaviour(handler) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return True

    return behaviour


def failing_first(times: int, code: int = 503) -> Behaviour:
    calls = []

    def behaviour(handler) -> bool:
        calls.append(1)
        if len(calls) <= times:
            handler.send_error(code)
            return True
        return False

    return behaviour


def synth_dataset(
    folder: Path, posts: int = 40, tags_per_head: int = 2, seed: int = 0
) -> tuple[Path, Path, CategorySet]:
    """A synthetic export built into a dataset: (data dir, site dir, categories)."""
    write_synthetic(folder, posts, seed=seed, tags_per_head=tags_per_head)
    categories = CategorySet.load(folder / "categories")
    data = folder / "data"
    build_dataset([folder / "export"], data, categories)
    return data, folder / "site", categories


def store_images(site: Path, data: Path) -> None:
    """Copy a synthetic site's originals into the dataset's image tree (the same layout)."""
    shutil.copytree(site / "data", data / "images", ignore=shutil.ignore_patterns("sample"))


def packed_dataset(folder: Path, posts: int = 40, size: int = 32, shard_size: int = 8):
    """A synthetic dataset with its images stored and packed: (data dir, categories, report)."""
    from furrytag_cli.dataset.pack import pack_dataset

    data, site, categories = synth_dataset(folder, posts=posts)
    store_images(site, data)
    report = pack_dataset(data, size, categories, shard_size=shard_size, workers=2)
    return data, categories, report
