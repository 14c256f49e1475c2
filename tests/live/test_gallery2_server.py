"""The live gallery's server against clients that hold it: one that sends its request a
byte at a time, just inside the silence allowed, and hundreds of connections at once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from nebula_build.live import galleryserver
from nebula_build.live.galleryserver import GalleryServer


def _port(server: GalleryServer) -> int:
    return int(server.origin.rsplit(":", 1)[1])


def _closed_by_server(client: socket.socket, trickle: bytes, every: float) -> bool:
    """Send `trickle` a byte every `every` seconds; True once the server hangs up."""
    client.settimeout(every)
    for byte in trickle:
        try:
            client.sendall(bytes([byte]))
            if client.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


@pytest.mark.parametrize(
    "trickle",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200,
        b"POST /pick HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4000\r\n\r\n" + b"{" * 200,
    ],
    ids=["head", "body"],
)
def test_a_request_sent_a_byte_at_a_time_is_let_go_at_its_deadline(trickle, monkeypatch):
    monkeypatch.setattr(galleryserver, "REQUEST_SECONDS", 1.0, raising=False)
    with GalleryServer() as server:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as client:
            # a byte every 0.1 s: never silent for the 30 s a read may wait
            assert _closed_by_server(client, trickle, every=0.1)
        assert time.monotonic() - started < 5


def test_the_event_stream_keeps_streaming_past_the_deadline(monkeypatch):
    monkeypatch.setattr(galleryserver, "REQUEST_SECONDS", 0.5, raising=False)
    monkeypatch.setattr(galleryserver, "ANSWER_SECONDS", 0.5)  # an answer's, too
    with (
        GalleryServer() as server,
        socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as client,
    ):
        client.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"data: " in _read_until(client, b"\n\n")
        time.sleep(1.5)
        server.publish("<p>round 1</p>", [], 1, ["hero"], read=lambda _: b"")
        assert b'"hero"' in _read_until(client, b"\n\n")


def _read_until(client: socket.socket, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = client.recv(65536)
        assert chunk, data
        data += chunk
    return data


@contextlib.contextmanager
def _connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send the start of a request and nothing more."""
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(count):
            client = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            client.sendall(b"GET / HTTP/1.1\r\n")
            clients.append(client)
        yield clients


def _get(port: int, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return _read_until_closed(client)


def _read_until_closed(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def test_connections_past_the_cap_wait_without_a_thread_each():
    before = threading.active_count()
    with GalleryServer() as server:
        port = _port(server)
        with _connections(port, 200):
            time.sleep(1)
            held = threading.active_count() - before
            assert held <= 64 + 2, held  # one thread per connection served, at most 64
        # once they hang up, the gallery answers as before
        assert _get(port).startswith(b"HTTP/1.1 200 ")


def test_a_request_waiting_for_a_slot_is_answered_once_one_frees(monkeypatch):
    monkeypatch.setattr(galleryserver, "REQUEST_SECONDS", 1.0, raising=False)
    with GalleryServer() as server:
        port = _port(server)
        with _connections(port, 64 + 10):
            time.sleep(0.2)
            started = time.monotonic()
            assert _get(port).startswith(b"HTTP/1.1 200 ")
            assert time.monotonic() - started < 8


def test_a_pick_from_the_page_served_on_ipv6_loopback_reaches_the_token_check():
    with GalleryServer(host="::1") as server:
        port = _port(server)
        assert server.url == f"http://[::1]:{port}/"
        body = b'{"image": "hero", "index": 0, "key": "' + b"0" * 64 + b'", "token": "x"}'
        head = (
            f"POST /pick HTTP/1.1\r\nHost: [::1]:{port}\r\nOrigin: http://[::1]:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        with socket.create_connection(("::1", port), timeout=10) as client:
            client.sendall(head.encode() + body)
            answer = _read_until_closed(client)
        assert answer.startswith(b"HTTP/1.1 403 ") and b"token is not this run's" in answer
