"""A loopback HTTP server for the weights tests: files at their official URL paths, HTTP Range, and faults
on request (a connection dropped after N bytes, a server that ignores Range). Started by the tests on
127.0.0.1; nothing here reaches the internet."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import official_files as off


def official_path(url: str) -> str:
    return urlsplit(url).path


class WeightsServer:
    """``root/<official path>`` served at ``http://127.0.0.1:<port>/<official path>``.

    ``drop_after[path] = n``: the next GET of ``path`` announces the whole length, sends ``n`` bytes and
    closes the connection (once). ``ignore_range``: paths answered with 200 and the whole file even when a
    Range is asked for. ``log``: one dict per request (path, range, status, sent bytes).
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.drop_after: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.log: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> WeightsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        asked = h.headers.get("Range")
        entry = {"path": path, "range": asked, "status": None, "sent": 0}
        self.log.append(entry)
        file = self.root / path.lstrip("/")
        if ".." in path or not file.is_file():
            entry["status"] = 404
            h.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        size = len(data)
        etag = f'"{size:x}-{file.stat().st_mtime_ns:x}"'
        start = 0
        if asked and path not in self.ignore_range and h.headers.get("If-Range", etag) == etag:
            first = asked.removeprefix("bytes=").split("-")[0]
            start = int(first)
            if start >= size:
                entry["status"] = 416
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{size}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        body = data[start:]
        entry["status"] = 206 if start else 200
        h.send_response(entry["status"])
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        cut = self.drop_after.pop(path, None)
        if cut is not None:
            h.wfile.write(body[:cut])
            h.wfile.flush()
            entry["sent"] = cut
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection end mid-body
            return
        h.wfile.write(body)
        entry["sent"] = len(body)


def write_official_tree(root: Path) -> dict:
    """Random-weight files in the official layouts, at the official URL paths under ``root``:

    - ``good``: a DINO ViT-S/16 backbone where dino_vits16 lives;
    - ``truncated``: the first 60% of that file, complete as an HTTP answer, where dino_vits8 lives;
    - ``wrong_arch``: a DINO ViT-Ti/16 backbone where dino_vitb16 (a ViT-B/16) lives.
    Nothing is served for dino_vitb8 (a 404)."""
    from highlighter.catalogue import CATALOGUE

    def at(name: str) -> Path:
        p = root / official_path(CATALOGUE[name].url).lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    good = at("dino_vits16")
    ref = off.dino_backbone(good, dim=384, heads=6, patch=16, grid=14)
    truncated = at("dino_vits8")
    data = good.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    wrong = at("dino_vitb16")
    off.dino_backbone(wrong, dim=192, heads=3, patch=16, grid=14)
    return {"root": root, "good": good, "truncated": truncated, "wrong_arch": wrong, "ref": ref}


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def block_internet(monkeypatch, loopback: bool = True) -> list:
    """Make every socket connection fail unless it goes to 127.0.0.1 (``loopback=False``: every one).
    Returns the list of addresses that were asked for, so a test can assert what was contacted."""
    asked: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def allowed(address) -> bool:
        asked.append(address)
        host = address[0] if isinstance(address, tuple) else str(address)
        return loopback and host in LOOPBACK

    def connect(self, address):
        if not allowed(address):
            raise OSError(f"the test blocked a connection to {address}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not allowed(address):
            raise OSError(f"the test blocked a connection to {address}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    for var in ("no_proxy", "NO_PROXY"):  # a proxy from the environment must not see loopback requests
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return asked


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
