"""`watch --serve` as a user runs it: under hundreds of connections that never finish
their request, and on an IPv6 address."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.live.test_gallery import SITE, _free_port, _wait_for
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


def _get6(port: int, host_header: str, address: str = "::1") -> tuple[int, bytes]:
    with socket.create_connection((address, port), timeout=10) as client:
        client.sendall(
            f"GET /files/img/logo.png HTTP/1.1\r\nHost: {host_header}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _start_on(root: Path, host: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port), "--host", host],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, port


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().rstrip("\n")


@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_the_gallery_serves_on_ipv6_loopback(host, project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    logo = (root / "img/logo.png").read_bytes()
    process, port = _start_on(root, host)
    try:
        assert _first_line(process) == f"gallery: http://[::1]:{port}/"
        _wait_for(f"http://[::1]:{port}/", "img/logo.png")
        assert _get6(port, f"[::1]:{port}") == (200, logo)
        assert _get6(port, f"localhost:{port}") == (200, logo)
        for rebound in (f"rebind.attacker.example:{port}", f"[::2]:{port}", f"::1:{port}"):
            assert _get6(port, rebound) == (403, b"unknown host"), rebound
    finally:
        err = _stop(process)
    assert "Traceback" not in err


def test_the_gallery_on_every_interface_serves_ipv6_and_ipv4_by_address_only(project, run_cli):
    root = project({"images.toml": SITE})
    assert run_cli("apply").code == 0
    logo = (root / "img/logo.png").read_bytes()
    process, port = _start_on(root, "::")
    try:
        every = " (listening on every address of this machine, IPv4 and IPv6)"
        assert _first_line(process) == f"gallery: http://[::1]:{port}/{every}"
        _wait_for(f"http://[::1]:{port}/", "img/logo.png")
        assert _get6(port, f"[::1]:{port}") == (200, logo)
        assert _get6(port, f"[fe80::1]:{port}") == (200, logo)  # an address, as with 0.0.0.0
        assert _get6(port, f"127.0.0.1:{port}", address="127.0.0.1") == (200, logo)
        assert _get6(port, f"rebind.attacker.example:{port}") == (403, b"unknown host")
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("host", "opened", "listening"),
    [
        ("::", "[::1]", "every address of this machine, IPv4 and IPv6"),
        ("[::]", "[::1]", "every address of this machine, IPv4 and IPv6"),
        ("0.0.0.0", "127.0.0.1", "every IPv4 address of this machine"),
    ],
)
def test_serving_every_address_prints_one_a_browser_opens(
    host, opened, listening, project, run_cli
):
    project({"images.toml": SITE})
    code, out, err = run_cli("watch", "--once", "--serve", "0", "--host", host)
    assert code == 0, err
    line = out.splitlines()[0]
    match = re.fullmatch(rf"gallery: http://{re.escape(opened)}:(\d+)/ \(listening on (.*)\)", line)
    assert match is not None, line
    assert int(match[1]) > 0 and match[2] == listening


def test_an_address_not_of_this_machine_is_one_line_naming_it(project, run_cli):
    project({"images.toml": SITE})
    code, out, err = run_cli("watch", "--serve", "0", "--host", "2001:db8::1")
    assert code == 1
    assert err.startswith("error: cannot serve the gallery on [2001:db8::1]:0 (")
    assert err.endswith(
        "; pass an address of this machine: --host ADDRESS (127.0.0.1, ::1, 0.0.0.0, ::)\n"
    ), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
