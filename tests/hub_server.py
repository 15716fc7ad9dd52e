"""A loopback stand-in for the Hugging Face hub's file routes, for the hub-name tests: ``HEAD`` and ``GET``
``/<owner>/<name>/resolve/<revision>/<file>`` with the headers huggingface_hub reads (X-Repo-Commit, ETag,
Content-Length), HTTP Range, and the hub's error answers (X-Error-Code RepoNotFound, GatedRepo, EntryNotFound,
RevisionNotFound). Started by the tests on 127.0.0.1; nothing here reaches the internet."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class HubServer:
    """``repos[repo_id] = {file name: bytes or Path}`` served at revision ``main`` (and at the repo's commit).
    ``gated``: repos answered 401 GatedRepo unless the request carries ``Authorization: Bearer <token>``.
    ``log``: one dict per request (method, path, range, status)."""

    def __init__(self, repos: dict[str, dict[str, bytes | Path]], gated: set[str] = frozenset(),
                 token: str = "hf_loopback_test_token"):
        self.repos, self.gated, self.token = repos, set(gated), token
        self.log: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):  # noqa: N802
                server._serve(self, body=False)

            def do_GET(self):  # noqa: N802
                server._serve(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @staticmethod
    def commit(repo: str) -> str:
        return hashlib.sha1(repo.encode()).hexdigest()

    def _error(self, h, status: int, code: str, message: str = "") -> None:
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        if message:
            h.send_header("X-Error-Message", message)
        h.send_header("Content-Length", "0")
        h.end_headers()
        self.log[-1]["status"] = status

    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        entry = {"method": h.command, "path": path, "range": h.headers.get("Range"), "status": None}
        self.log.append(entry)
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(h, 404, "RepoNotFound")
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo not in self.repos:
            return self._error(h, 401, "RepoNotFound", "Invalid username or password.")
        if repo in self.gated and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(h, 401, "GatedRepo", "Access to model is restricted.")
        if revision not in ("main", self.commit(repo)):
            return self._error(h, 404, "RevisionNotFound")
        content = self.repos[repo].get(name)
        if content is None:
            return self._error(h, 404, "EntryNotFound")
        data = content.read_bytes() if isinstance(content, Path) else content
        start = 0
        asked = h.headers.get("Range")
        if body and asked:
            start = min(int(asked.removeprefix("bytes=").split("-")[0] or 0), len(data))
        status = 206 if start else 200
        h.send_response(status)
        h.send_header("X-Repo-Commit", self.commit(repo))
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        entry["status"] = status
        if body:
            h.wfile.write(data[start:])
