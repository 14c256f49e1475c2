"""`watch --serve` as a user runs it: under hundreds of connections that never finish
their request, and on an IPv6 address."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from tests.live.test_gallery import SITE, _wait_for
from tests.live.test_review import _request, _start_watch, _stop

pytestmark = pytest.mark.slow


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def test_hundreds_of_unfinished_requests_hold_at_most_64_threads(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "img/logo.png")
        time.sleep(0.5)
        before = _threads(process.pid)
        with contextlib.ExitStack() as stack:
            for _ in range(200):
                client = socket.create_connection(("127.0.0.1", port), timeout=10)
                stack.enter_context(client)
                client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # and no more
            time.sleep(2)
            held = _threads(process.pid) - before
            assert held <= 64, held
        # hung up: the gallery answers as before
        status, _, body = _request(port, "GET", "/files/img/logo.png")
        assert status == 200 and body == (root / "img/logo.png").read_bytes()
    finally:
        err = _stop(process)
    assert "Traceback" not in err
