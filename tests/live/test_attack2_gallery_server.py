"""The live gallery server against what else runs on the machine: a pull request's link
at an output, another site's page in the same browser, a client that never finishes."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from tests.live.test_gallery import SITE, _wait_for
from tests.live.test_review import _request, _start_watch, _stop

SECRET = "NEBULA_API_KEY=sk-live-0123456789"


@pytest.mark.slow
def test_a_link_at_an_output_to_another_project_file_is_never_served(project, run_cli):
    root = project({"images.toml": SITE, ".env": SECRET})
    assert run_cli("apply").code == 0
    (root / "img/card.jpg").unlink()
    (root / "img/card.jpg").symlink_to("../.env")  # a pull request's link, inside the project
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "img/card.jpg")
        status, headers, body = _request(port, "GET", "/files/img/card.jpg")
        assert (status, body) == (404, b"not available")
        status, headers, body = _request(port, "GET", "/files/img/logo.png")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert body == (root / "img/logo.png").read_bytes()
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.slow
def test_another_sites_page_can_neither_embed_nor_stream_what_the_gallery_serves(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, "img/logo.png")
        cross_site = {"Origin": "https://attacker.example", "Sec-Fetch-Mode": "no-cors"}
        for path in ("/files/img/logo.png", "/events", "/"):
            for site in ("cross-site", "same-site"):  # another port on 127.0.0.1 is same-site
                sent = cross_site | {"Sec-Fetch-Site": site}
                status, headers, body = _request(port, "GET", path, headers=sent)
                assert (status, body) == (403, b"not for another site's page"), (path, site)
                assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
        # the gallery's own page, and a link followed from anywhere, are served
        own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"}
        status, headers, _ = _request(port, "GET", "/files/img/logo.png", headers=own)
        assert status == 200 and headers["Cross-Origin-Resource-Policy"] == "same-origin"
        followed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        assert _request(port, "GET", "/", headers=followed)[0] == 200
        assert _request(port, "GET", "/files/img/logo.png", headers=followed)[0] == 200
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "host",
    [
        "localhost:attacker.example",  # not a port
        "127.0.0.1:8765:80",
        "127.0.0.1:",
    ],
)
def test_a_host_header_whose_port_is_not_a_number_is_refused(host):
    from nebula_build.live.galleryserver import host_allowed

    assert not host_allowed(host, "127.0.0.1")
    assert host_allowed("127.0.0.1:8765", "127.0.0.1")
    assert host_allowed("[::1]:8765", "127.0.0.1")
    assert host_allowed("localhost", "127.0.0.1")


@pytest.mark.slow
def test_two_host_headers_are_refused(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "img/logo.png")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                f"GET /files/img/logo.png HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Host: rebind.attacker.example\r\nConnection: close\r\n\r\n".encode()
            )
            assert _answer(raw).startswith(b"HTTP/1.1 403 ")
    finally:
        err = _stop(process)
    assert "Traceback" not in err


def test_a_client_that_never_finishes_its_request_is_let_go(monkeypatch):
    from nebula_build.live import galleryserver

    monkeypatch.setattr(galleryserver, "IDLE_SECONDS", 0.5)
    with galleryserver.GalleryServer() as server:
        port = int(server.origin.rsplit(":", 1)[1])
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end
            assert idle.recv(1024) == b""  # closed by the server
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(
                b"POST /pick HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"  # and never the rest of the body
            )
            assert slow.recv(1024) == b""
        assert time.monotonic() - started < 5


def _answer(raw: socket.socket) -> bytes:
    """All the server sent before it closed the connection (or reset it: it may close
    with what it refused to read unread)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := raw.recv(65536):
            data += chunk
    return data


def test_a_request_head_past_64_kib_is_refused_before_it_is_held():
    from nebula_build.live.galleryserver import GalleryServer

    header = "X-Padding: " + "a" * 60_000 + "\r\n"
    with GalleryServer() as server:
        port = int(server.origin.rsplit(":", 1)[1])
        for padding, status in ((1, b"200"), (2, b"431"), (99, b"431")):
            head = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                with contextlib.suppress(ConnectionError):  # refused before all was sent
                    client.sendall(f"{head}{header * padding}\r\n".encode())
                answer = _answer(client)
                assert answer.startswith(b"HTTP/1.1 " + status + b" ") or (
                    status == b"431" and not answer
                ), (padding, answer[:40])
