"""The Hugging Face Hub's download endpoints, as ``huggingface_hub`` calls them, on a
``LocalServer``: point ``HF_ENDPOINT`` at ``server.base``.

``snapshot_download`` asks ``/api/models/OWNER/REPO/revision/REV`` for the commit, lists
``/api/models/OWNER/REPO/tree/COMMIT`` (recursive), then sends ``HEAD`` and ``GET`` to
``/OWNER/REPO/resolve/COMMIT/PATH`` for each file (commit, ETag and size in the headers).
"""

import hashlib
import json
from pathlib import Path

from tests.httpserver import LocalServer, Reply, Request


class FakeHub:
    """One model repository with files, reachable at a branch name and its commit."""

    def __init__(
        self,
        server: LocalServer,
        repo: str,
        files: dict[str, bytes],
        revisions: tuple[str, ...] = ("main",),
        token: str | None = None,
    ):
        self.server, self.repo, self.files, self.token = server, repo, files, token
        self.commit = hashlib.sha1(
            repo.encode() + b"".join(files[p] for p in sorted(files))
        ).hexdigest()
        for revision in (*revisions, self.commit):
            server.route(f"/api/models/{repo}/revision/{revision}", self.info)
        server.route(f"/api/models/{repo}/tree/{self.commit}", self.tree)
        for path in files:
            server.route(f"/{repo}/resolve/{self.commit}/{path}", self.file(path))

    @classmethod
    def of_folder(cls, server: LocalServer, repo: str, folder: Path, under: str = "", **kw):
        files = {
            f"{under}{p.relative_to(folder).as_posix()}": p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        return cls(server, repo, files, **kw)

    def _refused(self, request: Request) -> Reply | None:
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, b'{"error": "Invalid credentials"}', {"X-Error-Code": "RepoNotFound"})
        return None

    def info(self, request: Request) -> Reply:
        body = {
            "id": self.repo,
            "modelId": self.repo,
            "sha": self.commit,
            "private": bool(self.token),
            "siblings": [{"rfilename": p} for p in self.files],
        }
        return self._refused(request) or Reply(200, json.dumps(body).encode(), _JSON)

    def tree(self, request: Request) -> Reply:
        entries = [
            {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
            for p, b in self.files.items()
        ]
        return self._refused(request) or Reply(200, json.dumps(entries).encode(), _JSON)

    def file(self, path: str):
        body = self.files[path]

        def handler(request: Request) -> Reply:
            headers = {
                "ETag": f'"{hashlib.sha1(body).hexdigest()}"',
                "X-Repo-Commit": self.commit,
                "Content-Type": "application/octet-stream",
            }
            return self._refused(request) or Reply(200, body, headers)

        return handler

    def downloads(self) -> int:
        """GET requests for files so far."""
        return sum(
            1
            for r in self.server.requests
            if r.method == "GET" and r.path.startswith(f"/{self.repo}/resolve/")
        )


_JSON = {"Content-Type": "application/json"}
