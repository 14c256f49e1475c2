"""Serves the live gallery on loopback while `nebula-build watch --serve` runs.

GET / is the page, /files/<output> the images it shows (and nothing else of
the project), /thumbs/<name> their thumbnails, /draws/<generation key> the
candidate draws it shows (from the cache, and no other entry), /events a
server-sent event stream that announces each round so the page refreshes
itself. POST /pick makes one of an image's draws its output. Binds 127.0.0.1
unless told otherwise.

Files are read through the project's guard (a regular file inside the project,
never through a link out) and served only where their bytes are an image, typed by
those bytes (a pull request's link at an output to `.env` serves nothing); draws
through the cache (checked against their digest). A request naming any other host
than the one served is refused: a web page cannot reach the gallery by DNS
rebinding. Any web page the browser shows can send requests to loopback: what it
asks for from another site (an `<img>`, a `fetch`, an `EventSource`; the browser
says so in `Sec-Fetch-Site`) is refused but a link followed, every answer is
`Cross-Origin-Resource-Policy: same-origin`, a pick must prove it comes from the
gallery's own page (see `pickguard`), and the page may not be framed. A client
that sends nothing for `IDLE_SECONDS` is let go, so no connection holds a thread
for good, and a request's head past `HEAD_BYTES` is refused as it is read. An answer
(the event stream aside) has `ANSWER_SECONDS` to go out whole, each piece of it
`IDLE_SECONDS`: a client that reads a byte a second lets go of its thread by then.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import json
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlsplit

from nebula_build.httpthread import BackgroundHTTPServer, is_ipv6
from nebula_build.imaging import sniff
from nebula_build.live.draws import DrawBytes
from nebula_build.live.gallery import page_data
from nebula_build.live.gallerypage import LIVE_SCRIPT
from nebula_build.live.pickguard import PickRefused, PickRequest, check_pick

_KEEPALIVE_SECONDS = 10.0
#: how long a connection may send nothing (mid-request, or between requests)
IDLE_SECONDS = 30.0
#: how long a connection has to send a whole request, from its opening or the end of
#: the answer before: one byte every 29 s is never silent for `IDLE_SECONDS`
REQUEST_SECONDS = 30.0
#: how long one answer may take to go out, headers and body: a client reading a byte a
#: second lets go of its thread by then, and a 256 MiB image needs 4.5 MB/s
ANSWER_SECONDS = 60.0
#: an answer goes out in pieces of this size, each with `IDLE_SECONDS` to leave
_PIECE_BYTES = 256 << 10
#: connections served at once, a thread each; the next wait without one
MAX_CONNECTIONS = 64
#: event streams open at once: each holds a connection for as long as its tab is open,
#: so past these the page, its images and picks still have connections left
MAX_EVENT_STREAMS = 16
#: how long a stream turned away waits before its EventSource asks again
EVENTS_RETRY_MS = 5000
#: a request's line and headers: a browser's are a few KiB (cookies of every port of
#: this machine included); the standard library alone holds up to 6.5 MB per connection
HEAD_BYTES = 64 << 10
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: a Host header: a name or IPv4 address, or an IPv6 address in brackets; a port
_HOST = re.compile(r"(?:(?P<name>[^\[\]:]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::[0-9]+)?")
_PAGE_HEADERS = (
    ("X-Frame-Options", "DENY"),  # no page may frame the gallery and steer its clicks
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
)
#: the browsers' word for a request another site's page made (not a link followed)
_OTHER_SITES = frozenset({"cross-site", "same-site"})
#: what an output is served as, by the format its bytes have (`imaging.sniff`)
_IMAGE_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "avif": "image/avif",
}
ReadFile = Callable[[str], bytes]
ReadDraw = Callable[[str], DrawBytes | None]
#: (status, one line) for a pick the page asked for: image, draw index, the draw's key
PickFn = Callable[[str, int, str], tuple[int, str]]


def _no_files(relative: str) -> bytes:
    raise FileNotFoundError(relative)


def _no_draws(key: str) -> DrawBytes | None:
    return None


def _no_picks(name: str, index: int, key: str) -> tuple[int, str]:
    return 503, "this gallery does not pick: run `nebula-build watch --serve`"


def host_allowed(header: str | None, bound: str) -> bool:
    """Whether a request's Host names this server: a loopback name, the bound address,
    or (bound to every interface) an IP address; never a DNS name a page controls.
    An IPv6 address is written in brackets (`[::1]:8765`), as a browser sends it."""
    match = _HOST.fullmatch(header or "")
    if match is None:
        return False
    host = (match["name"] or match["ipv6"]).lower()
    if host in _LOOPBACK_NAMES or _same_address(host, bound):
        return True
    bound_address = _address(bound)
    if bound_address is not None and bound_address.is_unspecified:
        return _address(host) is not None
    return False


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _same_address(host: str, bound: str) -> bool:
    """Whether `host` is the address bound, however it is written (`0:0::1` is `::1`)."""
    address = _address(host)
    return host == bound.lower() if address is None else address == _address(bound)


class GalleryServer(BackgroundHTTPServer):
    """The live gallery; `publish()` after each round."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        #: this run's rounds: a page of another (watch stopped, started again) reloads
        self.run = secrets.token_urlsafe(8)
        # the first round's page replaces this one by itself
        self._html = f"<!doctype html><title>nebula-build</title><p>Building…</p>{LIVE_SCRIPT}"
        self._files: frozenset[str] = frozenset()
        self._read: ReadFile = _no_files
        self._thumbs: frozenset[str] = frozenset()
        self._read_thumb: ReadFile = _no_files
        self._draws: frozenset[str] = frozenset()
        self._read_draw: ReadDraw = _no_draws
        self._pickable: dict[str, int] = {}
        self._pick: PickFn = _no_picks
        #: proves a pick comes from the page this run served (it is in that page only)
        self.token = secrets.token_urlsafe(32)
        self.host = host
        self._round = 0
        self._changed: list[str] = []
        self._condition = threading.Condition()
        self._stopping = False
        super().__init__(_handler_for(self), host, port, max_connections=MAX_CONNECTIONS)

    @property
    def every_address(self) -> bool:
        """Whether it serves every address of this machine (`0.0.0.0`, `::`)."""
        bound = _address(self.address[0])
        return bound is not None and bound.is_unspecified

    @property
    def url(self) -> str:
        """The page's address as a browser opens it: bound to every address, this
        machine's loopback one of the same family (`http://[::]:8765/` opens nothing)."""
        if not self.every_address:
            return f"{self.origin}/"
        host, port = self.address
        loopback = "[::1]" if is_ipv6(host) else "127.0.0.1"
        return f"http://{loopback}:{port}/"

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
        thumbs: Collection[str] = (),
        read_thumb: ReadFile = _no_files,
        draws: Collection[str] = (),
        read_draw: ReadDraw = _no_draws,
        pickable: Mapping[str, int] = {},
    ) -> None:
        """Show a round: its page, and the project files (outputs) it may serve, read
        with `read` (the guard's); the thumbnails it shows (file names), read with
        `read_thumb`; the draws it shows (generation keys), read with
        `read_draw` (the cache's); the images it may pick for, with their draw count."""
        with self._condition:
            self._html, self._files, self._read = html, frozenset(files), read
            self._thumbs, self._read_thumb = frozenset(thumbs), read_thumb
            self._draws, self._read_draw = frozenset(draws), read_draw
            self._pickable = dict(pickable)
            self._round, self._changed = round_number, list(changed)
            self._condition.notify_all()

    def republish(self, html: str, round_number: int) -> None:
        """Show round `round_number` with another page over the same files, thumbnails,
        draws and picks (a round that stopped before it built anything: its error)."""
        with self._condition:
            self._html, self._round, self._changed = html, round_number, []
            self._condition.notify_all()

    def accept_picks(self, pick: PickFn) -> None:
        """Answer POST /pick with `pick(name, index, key)`, called on the request's thread."""
        self._pick = pick

    def _snapshot(self) -> tuple[str, frozenset[str], int, list[str]]:
        with self._condition:
            return self._html, self._files, self._round, self._changed

    def _image(self, relative: str) -> tuple[bytes, str] | None:
        """An output the current page shows, with its type, if its bytes are an image;
        None otherwise (missing, refused by the guard, or other bytes: a link a pull
        request put at the output's path may lead to any file of the project)."""
        with self._condition:
            read = self._read
        try:
            data = read(relative)
        except Exception:  # missing, or refused by the guard: nothing to show
            return None
        kind = _IMAGE_TYPES.get(sniff(data) or "")
        return None if kind is None else (data, kind)

    def _thumb(self, name: str) -> bytes | None:
        """A thumbnail the current page shows, or None."""
        with self._condition:
            shown, read = name in self._thumbs, self._read_thumb
        if not shown:
            return None
        try:
            return read(name)
        except Exception:  # gone, or refused by the guard: nothing to show
            return None

    def _draw(self, key: str) -> DrawBytes | None:
        """A draw the current page shows, or None."""
        with self._condition:
            shown, read = key in self._draws, self._read_draw
        return read(key) if shown else None

    def _pick_for(self, request: PickRequest) -> tuple[int, str]:
        with self._condition:
            count, pick = self._pickable.get(request.image), self._pick
        if count is None:
            return 400, f"no image named {request.image[:80]!r} has candidates on this page"
        if not 0 <= request.index < count:
            return 400, f"{request.image} has draws 0 to {count - 1} (got {request.index})"
        return pick(request.image, request.index, request.key)

    def _event(self, round_number: int, changed: list[str]) -> str:
        """The event announcing a round of this run."""
        return f"data: {page_data(round_number, changed, self.run)}\n\n"

    def _wait_for_round(self, seen: int) -> tuple[int, list[str]] | None:
        """The next round after `seen`, None on a keep-alive timeout; raises when closing."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._round > seen or self._stopping, timeout=_KEEPALIVE_SECONDS
            )
            if self._stopping:
                raise ConnectionAbortedError
            return (self._round, self._changed) if self._round > seen else None


class _RequestDeadline(io.RawIOBase):
    """A connection's bytes, each read waiting at most `IDLE_SECONDS` and none past the
    deadline `start()` sets; past it, a read times out as a silent client's does."""

    def __init__(self, connection: socket.socket, write_timeout: float) -> None:
        super().__init__()
        self._connection = connection
        self._write_timeout = write_timeout
        self._until = time.monotonic() + REQUEST_SECONDS

    def start(self) -> None:
        """A new request begins: it has `REQUEST_SECONDS` to arrive whole."""
        self._until = time.monotonic() + REQUEST_SECONDS

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._until - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"a request must arrive within {REQUEST_SECONDS:g} s")
        self._connection.settimeout(min(left, IDLE_SECONDS))
        try:
            return self._connection.recv_into(buffer)
        finally:  # the answer's writes keep their own timeout
            self._connection.settimeout(self._write_timeout)


class _AnswerDeadline(io.BufferedIOBase):
    """A connection's answers: each piece written waits at most `IDLE_SECONDS` to leave,
    and none past the deadline `start()` sets (`ANSWER_SECONDS`) or, for the event
    stream, which writes for as long as its tab is open, `endless()`."""

    def __init__(self, connection: socket.socket) -> None:
        super().__init__()
        self._connection = connection
        self._until = time.monotonic() + ANSWER_SECONDS

    def start(self) -> None:
        """A new answer begins: it has `ANSWER_SECONDS` to go out whole."""
        self._until = time.monotonic() + ANSWER_SECONDS

    def endless(self) -> None:
        """This answer has no deadline: only each of its pieces has."""
        self._until = math.inf

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _PIECE_BYTES):
            left = self._until - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"an answer must go out within {ANSWER_SECONDS:g} s")
            self._connection.settimeout(min(left, IDLE_SECONDS))
            self._connection.sendall(view[start : start + _PIECE_BYTES])
        return len(view)


class _HeadLimit:
    """A connection's reader that lets `left` bytes of lines through (a request's line
    and headers: they are read by line), then refuses more as one line too long (431)."""

    def __init__(self, reader: io.BufferedIOBase) -> None:
        self._reader = reader
        self.left = HEAD_BYTES

    def readline(self, size: int = -1) -> bytes:
        allowed = self.left + 1 if size < 0 else min(size, self.left + 1)
        line = self._reader.readline(allowed)
        self.left -= len(line)
        if self.left < 0:
            raise http.client.LineTooLong(f"a request's head is at most {HEAD_BYTES} bytes")
        return line

    def read(self, size: int = -1) -> bytes:
        return self._reader.read(size)

    def close(self) -> None:
        self._reader.close()


def _from_another_site(headers: Message) -> bool:
    """Whether the browser says another site's page asked for this (an image, a fetch,
    an event stream), rather than the gallery's page, an address typed or a link
    followed. Another port of this machine is the same site, not the same origin."""
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    mode = (headers.get("Sec-Fetch-Mode") or "").strip().lower()
    return site in _OTHER_SITES and mode != "navigate"


def _handler_for(server: GalleryServer) -> type[BaseHTTPRequestHandler]:
    streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        timeout = IDLE_SECONDS

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # read through the deadline below instead
            self.deadline = _RequestDeadline(self.connection, IDLE_SECONDS)
            self.rfile = _HeadLimit(io.BufferedReader(self.deadline))  # type: ignore[assignment]
            self.wfile.close()  # answer through the deadline below instead
            self.answer = self.wfile = _AnswerDeadline(self.connection)

        def handle_one_request(self) -> None:
            self.rfile.left = HEAD_BYTES  # type: ignore[attr-defined]
            self.deadline.start()
            self.answer.start()  # a refused head is an answer too
            super().handle_one_request()

        def parse_request(self) -> bool:
            self.answer.start()  # the request's time is the request deadline's
            return super().parse_request()

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            hosts = self.headers.get_all("Host") or []
            if len(hosts) != 1 or not host_allowed(hosts[0], server.host):
                self._send(403, b"unknown host", "text/plain")
                return
            if _from_another_site(self.headers):
                self._send(403, b"not for another site's page", "text/plain")
                return
            path = unquote(urlsplit(self.path).path)
            html, files, _, _ = server._snapshot()
            if path in ("/", "/index.html"):
                self._send(200, html.encode(), "text/html; charset=utf-8", _PAGE_HEADERS)
            elif path == "/events":
                self._events()
            elif path.startswith("/files/") and path[len("/files/") :] in files:
                image = server._image(path[len("/files/") :])
                if image is None:
                    self._send(404, b"not available", "text/plain")
                else:
                    self._send(200, *image)
            elif path.startswith("/thumbs/"):
                thumb = server._thumb(path[len("/thumbs/") :])
                if thumb is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, thumb, "image/webp")
            elif path.startswith("/draws/"):
                draw = server._draw(path[len("/draws/") :])
                if draw is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, draw.data, draw.media_type)
            else:
                self._send(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            try:
                request = check_pick(
                    self.path,
                    self.headers,
                    self.rfile,
                    client=str(self.client_address[0]),
                    token=server.token,
                    host_ok=lambda host: host_allowed(host, server.host),
                )
            except PickRefused as refused:
                self.close_connection = True  # the body may be unread
                self._answer(refused.status, refused.message)
                return
            try:
                status, message = server._pick_for(request)
            except Exception:  # a bug: the watcher's terminal shows it, the page a line
                status, message = 500, "the pick failed: see the terminal running watch"
            self._answer(status, message)

        def _answer(self, status: int, message: str) -> None:
            text = " ".join(message.split())  # one line, whatever came
            body = json.dumps({"ok": status == 200, "message": text}).encode()
            self._send(status, body, "application/json")

        def _send(
            self,
            status: int,
            data: bytes,
            kind: str,
            headers: tuple[tuple[str, str], ...] = (),
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _events(self) -> None:
            if not streams.acquire(blocking=False):
                self._events_later()
                return
            try:
                self._stream_events()
            finally:
                streams.release()

        def _events_later(self) -> None:
            """Past the cap: the current round, then the end of the stream. An EventSource
            gives up for good on any status but 200 (503 included); a 200 stream that
            ends it opens again after `retry` ms, by itself."""
            _, _, seen, changed = server._snapshot()
            body = f"retry: {EVENTS_RETRY_MS}\n{server._event(seen, changed)}".encode()
            self.close_connection = True
            self._send(200, body, "text/event-stream")

        def _hung_up(self) -> bool:
            """Whether the client closed the stream (its tab closed). A write to it
            may still succeed once, so the write alone notices only the one after."""
            connection: socket.socket = self.connection
            waits = connection.gettimeout()
            connection.settimeout(0)  # look, never wait
            try:
                return connection.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:  # nothing sent, and still open
                return False
            except OSError:
                return True
            finally:
                connection.settimeout(waits)

        def _stream_events(self) -> None:
            self.answer.endless()
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.end_headers()
            self.close_connection = True
            _, _, seen, changed = server._snapshot()
            try:
                self.wfile.write(server._event(seen, changed).encode())
                self.wfile.flush()
                while True:
                    news = server._wait_for_round(seen)
                    if self._hung_up():
                        return
                    if news is None:
                        self.wfile.write(b": keep-alive\n\n")
                    else:
                        seen, changed = news
                        self.wfile.write(server._event(seen, changed).encode())
                    self.wfile.flush()
            except (ConnectionError, OSError):
                return

    return Handler
