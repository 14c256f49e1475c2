"""The live gallery's answers against a client that reads them slowly: each answer has
`ANSWER_SECONDS` to go out whole, so a trickling reader lets go of its thread by then,
while a large image on a steady connection arrives whole however long a piece waits."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from nebula_build.live import galleryserver
from nebula_build.live.galleryserver import GalleryServer

PNG = b"\x89PNG\r\n\x1a\n"


def _port(server: GalleryServer) -> int:
    return int(server.origin.rsplit(":", 1)[1])


def _image_request(port: int) -> socket.socket:
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    client.settimeout(10)
    client.connect(("127.0.0.1", port))
    client.sendall(b"GET /files/big.png HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return client


def _read_at(client: socket.socket, piece: int, every: float, stop: threading.Event) -> bytes:
    """Read `piece` bytes every `every` seconds; what was read once the server hangs up,
    or once `stop` is set."""
    data = bytearray()
    while not stop.is_set():
        try:
            chunk = client.recv(piece)
        except ConnectionError:
            break
        if not chunk:
            break
        data += chunk
        time.sleep(every)
    return bytes(data)


def _serving(server: GalleryServer, size: int) -> bytes:
    image = PNG + bytes(size - len(PNG))
    server.publish("<p>big</p>", ["big.png"], 1, [], read=lambda _: image)
    return image


def test_a_large_image_on_a_steady_connection_arrives_whole_past_a_pieces_wait(monkeypatch):
    # a piece may wait 1 s to leave; the whole image takes ~3 s: one answer, not one piece
    monkeypatch.setattr(galleryserver, "IDLE_SECONDS", 1.0)
    monkeypatch.setattr(galleryserver, "ANSWER_SECONDS", 20.0, raising=False)
    with GalleryServer() as server:
        image = _serving(server, 24 << 20)
        with _image_request(_port(server)) as client:
            answer = _read_at(client, 64 << 10, every=0.008, stop=threading.Event())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body) == len(image) and body == image


@pytest.mark.parametrize(
    ("piece", "every", "let_go_at"),
    [
        (64, 0.5, 2.0),  # a piece cannot leave within IDLE_SECONDS
        (16 << 10, 0.016, 4.0),  # each piece leaves in time, the whole answer cannot
    ],
    ids=["a-few-bytes-at-a-time", "steady-but-slow"],
)
def test_a_slow_reader_lets_go_of_its_thread_by_the_answers_deadline(
    piece, every, let_go_at, monkeypatch
):
    monkeypatch.setattr(galleryserver, "IDLE_SECONDS", 2.0)
    monkeypatch.setattr(galleryserver, "ANSWER_SECONDS", 4.0, raising=False)
    monkeypatch.setattr(galleryserver, "MAX_CONNECTIONS", 1)  # the reader holds the one
    stop = threading.Event()
    with GalleryServer() as server:
        port = _port(server)
        _serving(server, 64 << 20)  # at ~1 MB/s, a minute to read whole
        with _image_request(port) as slow:
            assert slow.recv(12) == b"HTTP/1.1 200"
            started = time.monotonic()
            reader = threading.Thread(target=_read_at, args=(slow, piece, every, stop))
            reader.start()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=15) as other:
                    other.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    assert other.recv(12) == b"HTTP/1.1 200"  # once the reader's slot frees
                waited = time.monotonic() - started
            finally:
                stop.set()
                reader.join()
    assert let_go_at - 0.5 < waited < let_go_at + 1.5, waited
