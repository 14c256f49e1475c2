"""What a server's answer may cost the client, through the CLI: an image far larger than
asked is counted at its own size in the budget of pixels encoded at once; the key never
goes through an HTTP proxy in the clear; base64 in lines is read, not refused once paid."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from nebula_build.engine.pixelbudget import PixelBudget
from tests.conftest import CANARY_KEY, image_info, nebula_manifest

EIGHT = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png", "seed": n} for n in range(8)}


def test_an_answer_larger_than_asked_takes_its_own_size_of_the_budget(
    project, run_cli, nebula_server, monkeypatch
):
    """Eight 64x64 images answered with 8192x8192 each took 3.2 GB at once: the budget
    counted each as 64x64, the size the manifest declared."""
    shares: list[int] = []
    taken = PixelBudget.taken

    def recorded(self: PixelBudget, pixels: int):  # type: ignore[no-untyped-def]
        shares.append(pixels)
        return taken(self, pixels)

    monkeypatch.setattr(PixelBudget, "taken", recorded)
    root = project({"images.toml": nebula_manifest(EIGHT, concurrency=8)})
    nebula_server.add_faults(*["wrong_size:2048"] * 8)
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert err.count("returned 2048x2048 for a 64x64 request") == 8
    assert sorted(shares) == [2048 * 2048] * 8
    assert image_info(root / "i0.png") == ("PNG", (64, 64))


@pytest.fixture
def proxy() -> Iterator[list[bytes]]:
    """A listener on loopback that records what is sent to it and answers nothing."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(2)
                try:
                    received.append(connection.recv(65536))
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    received.append(f"http://127.0.0.1:{listener.getsockname()[1]}".encode())
    yield received
    stop.set()
    thread.join()
    listener.close()


def test_the_key_never_goes_through_a_proxy_in_the_clear(
    project, run_cli, nebula_server, monkeypatch, proxy
):
    """HTTP_PROXY sent `Authorization: Bearer <key>` in plain text to the proxy, on its way
    to the loopback server that NEBULA_BASE_URL names (the documented dry run)."""
    address = proxy.pop(0).decode()
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(variable, address)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    root = project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert proxy == []
    assert CANARY_KEY not in err
    assert image_info(root / "a.png") == ("PNG", (64, 64))


def test_base64_in_lines_is_read(project, run_cli, nebula_server):
    """An image's base64 in 76-column lines (MIME's) was 'malformed response: bad base64',
    and not sent again: the paid image was lost."""
    root = project({"images.toml": nebula_manifest({"a": {"prompt": "x", "output": "a.png"}})})
    nebula_server.add_faults("wrapped_base64")
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(nebula_server.generations) == 1
    assert image_info(root / "a.png") == ("PNG", (64, 64))
