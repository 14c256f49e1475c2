"""The gallery's event streams are capped apart from its other connections: open
streams (gallery tabs, or a local process holding them) never take the slots the
page, its images and picks are served from."""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Iterator

import pytest

from nebula_build.live import galleryserver
from nebula_build.live.galleryserver import GalleryServer
from tests.live.test_gallery import SITE, _wait_for
from tests.live.test_review import _start_watch, _stop

STREAMS = galleryserver.MAX_EVENT_STREAMS


def _open_stream(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return client


def _read_until(client: socket.socket, end: bytes) -> bytes:
    data = b""
    while end not in data:
        chunk = client.recv(65536)
        assert chunk, data
        data += chunk
    return data


def _read_until_closed(client: socket.socket) -> bytes:
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


@contextlib.contextmanager
def _streams(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` event streams, each past its first event: all of them being served."""
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(count):
            client = stack.enter_context(_open_stream(port))
            assert _read_until(client, b"\n\n").startswith(b"HTTP/1.1 200 ")
            clients.append(client)
        yield clients


def _get(port: int, path: str, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        client.sendall(head.encode())
        return _read_until_closed(client)


def _port(server: GalleryServer) -> int:
    return int(server.origin.rsplit(":", 1)[1])


def test_a_stream_past_the_cap_is_told_to_come_back_and_the_browser_retries_by_itself():
    with GalleryServer() as server:
        server.publish("<p>round 3</p>", [], 3, ["hero"], read=lambda _: b"")
        port = _port(server)
        with _streams(port, STREAMS), _open_stream(port) as refused:
            answer = _read_until_closed(refused)  # closed at once, not held
        head, _, body = answer.partition(b"\r\n\r\n")
        # an EventSource gives up for good on any status but 200 (a 503 included), and
        # reconnects after `retry` ms when a 200 stream ends: the tab is live again
        # once a stream frees, and meanwhile sees each round as it retries
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"Content-Type: text/event-stream" in head
        assert body.startswith(f"retry: {galleryserver.EVENTS_RETRY_MS}\n".encode())
        event = f'data: {{"number": 3, "changed": ["hero"], "run": "{server.run}"}}'
        assert event.encode() in body


@pytest.mark.parametrize("rounds", [True, False], ids=["rounds", "idle"])
def test_a_closed_stream_frees_its_place(rounds, monkeypatch):
    # the server notices a hang-up as it next writes: a round, or a keep-alive
    monkeypatch.setattr(galleryserver, "_KEEPALIVE_SECONDS", 0.2)
    with GalleryServer() as server:
        port = _port(server)
        with _streams(port, STREAMS) as held:
            held.pop().close()
            deadline = time.monotonic() + 5
            for round_number in itertools.count(1):
                if rounds:
                    server.publish("<p>next</p>", [], round_number, [], read=lambda _: b"")
                with _open_stream(port) as again:
                    if b"retry: " not in _read_until(again, b"data: "):
                        break
                assert time.monotonic() < deadline, "the closed stream kept its place"
                time.sleep(0.05)


@pytest.mark.slow
def test_open_event_streams_leave_the_page_and_its_images_served(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "img/logo.png")
        # 64 streams: as many as the server serves connections at once
        with _streams(port, STREAMS), contextlib.ExitStack() as past_the_cap:
            for _ in range(galleryserver.MAX_CONNECTIONS - STREAMS):
                past_the_cap.enter_context(_open_stream(port))
            time.sleep(0.5)
            started = time.monotonic()
            page = _get(port, "/")
            image = _get(port, "/files/img/logo.png")
            took = time.monotonic() - started
        assert page.startswith(b"HTTP/1.1 200 ") and b"img/logo.png" in page
        assert image.startswith(b"HTTP/1.1 200 ")
        assert image.endswith((root / "img/logo.png").read_bytes())
        assert took < 2, took
    finally:
        err = _stop(process)
    assert "Traceback" not in err
