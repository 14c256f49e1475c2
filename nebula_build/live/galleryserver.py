"""Serves the live gallery on loopback while `nebula-build watch --serve` runs.

GET / is the page, /files/<output> the images it shows (and nothing else of
the project), /events a server-sent event stream that announces each round so
the page refreshes itself. Binds 127.0.0.1 unless told otherwise.

Files are read through the project's guard (a regular file inside the project,
never through a link out), and a request naming any other host than the one
served is refused: a web page cannot reach the gallery by DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import mimetypes
import threading
from collections.abc import Callable, Collection
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from nebula_build.httpthread import BackgroundHTTPServer
from nebula_build.live.gallery import page_data

_KEEPALIVE_SECONDS = 10.0
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ReadFile = Callable[[str], bytes]


def _no_files(relative: str) -> bytes:
    raise FileNotFoundError(relative)


def host_allowed(header: str | None, bound: str) -> bool:
    """Whether a request's Host names this server: a loopback name, the bound address,
    or (bound to every interface) an IP address; never a DNS name a page controls."""
    if not header:
        return False
    host = header.rsplit(":", 1)[0] if not header.endswith("]") else header
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host == bound.lower():
        return True
    if bound in ("0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True
    return False


class GalleryServer(BackgroundHTTPServer):
    """The live gallery; `publish()` after each round."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._html = "<!doctype html><title>nebula-build</title><p>Building…</p>"
        self._files: frozenset[str] = frozenset()
        self._read: ReadFile = _no_files
        self.host = host
        self._round = 0
        self._changed: list[str] = []
        self._condition = threading.Condition()
        self._stopping = False
        super().__init__(_handler_for(self), host, port)

    @property
    def url(self) -> str:
        return f"{self.origin}/"

    def _closing(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()

    def publish(
        self,
        html: str,
        files: Collection[str],
        round_number: int,
        changed: list[str],
        *,
        read: ReadFile,
    ) -> None:
        """Show a round: its page, and the project files (outputs) it may serve, read
        with `read` (the guard's)."""
        with self._condition:
            self._html, self._files, self._read = html, frozenset(files), read
            self._round, self._changed = round_number, list(changed)
            self._condition.notify_all()

    def _snapshot(self) -> tuple[str, frozenset[str], int, list[str]]:
        with self._condition:
            return self._html, self._files, self._round, self._changed

    def _file(self, relative: str) -> bytes:
        with self._condition:
            read = self._read
        return read(relative)

    def _wait_for_round(self, seen: int) -> tuple[int, list[str]] | None:
        """The next round after `seen`, None on a keep-alive timeout; raises when closing."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._round > seen or self._stopping, timeout=_KEEPALIVE_SECONDS
            )
            if self._stopping:
                raise ConnectionAbortedError
            return (self._round, self._changed) if self._round > seen else None


def _handler_for(server: GalleryServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if not host_allowed(self.headers.get("Host"), server.host):
                self._send(403, b"unknown host", "text/plain")
                return
            path = unquote(urlsplit(self.path).path)
            html, files, _, _ = server._snapshot()
            if path in ("/", "/index.html"):
                self._send(200, html.encode(), "text/html; charset=utf-8")
            elif path == "/events":
                self._events()
            elif path.startswith("/files/") and path[len("/files/") :] in files:
                relative = path[len("/files/") :]
                try:
                    data = server._file(relative)
                except Exception:  # missing, or refused by the guard: nothing to show
                    self._send(404, b"not available", "text/plain")
                    return
                kind = mimetypes.guess_type(relative)[0] or "application/octet-stream"
                self._send(200, data, kind)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _events(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.close_connection = True
            _, _, seen, changed = server._snapshot()
            try:
                self.wfile.write(f"data: {page_data(seen, changed)}\n\n".encode())
                self.wfile.flush()
                while True:
                    news = server._wait_for_round(seen)
                    if news is None:
                        self.wfile.write(b": keep-alive\n\n")
                    else:
                        seen, changed = news
                        self.wfile.write(f"data: {page_data(seen, changed)}\n\n".encode())
                    self.wfile.flush()
            except (ConnectionError, OSError):
                return

    return Handler
