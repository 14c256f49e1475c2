"""A remote cache that fails is said in one readable line: what failed, the host, the
short cause, not the storage library's whole report (NEBULA_BUILD_DEBUG=1 keeps it)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.manifests import PREVIEW

SITE = PREVIEW + '\n[images.hero]\nprompt = "a lighthouse"\noutput = "img/hero.png"\n'
FAILED = "going on without the remote cache"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", "s3://team-bucket/site")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every request, as one whose role is wrong does."""

    def do_HEAD(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _note(err: str) -> str:
    (line,) = [line for line in err.splitlines() if FAILED in line]
    return line


def test_an_unreachable_remote_is_said_by_its_host_and_cause(
    project, run_cli, s3_variables, monkeypatch
):
    host = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}")
    project({"images.toml": SITE})
    code, _, err = run_cli("plan")
    assert code == 0, err
    note = _note(err)
    assert note.startswith("note: remote cache ")
    assert note.endswith(
        f": looking up a key: no connection to {host} (connection refused, 3 tries); {FAILED}"
    )
    for noise in ("Error performing", "max_retries", "retry_timeout", "/v1/ac/", "ms,"):
        assert noise not in note


def test_a_remote_that_refuses_is_said_by_its_host_and_status(
    project, run_cli, s3_variables, refusing, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{refusing}")
    project({"images.toml": SITE})
    code, _, err = run_cli("plan")
    assert code == 0, err
    assert _note(err).endswith(f": looking up a key: {refusing} answered 403 Forbidden; {FAILED}")


def test_nebula_build_debug_says_the_library_s_whole_report(
    project, run_cli, s3_variables, monkeypatch
):
    host = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}")
    monkeypatch.setenv("NEBULA_BUILD_DEBUG", "1")
    project({"images.toml": SITE})
    code, _, err = run_cli("plan")
    assert code == 0, err
    assert f"Error performing HEAD http://{host}/team-bucket/site/v1/ac/" in _note(err)
