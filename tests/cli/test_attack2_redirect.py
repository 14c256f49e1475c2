"""A server that answers a generation with a redirect: the key never follows it, and
the failure says why instead of reading as a rejected request."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import pytest

from nebula_build.httpthread import BackgroundHTTPServer
from tests.conftest import nebula_manifest

KEY = "sk-attack2-0123456789abcdef"


class _Recorder(BaseHTTPRequestHandler):
    """The host a redirect points at: it records who came, with what."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _redirecting(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(307)
            self.send_header("Location", f"{target}/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect


@pytest.fixture
def redirect_to_another_host() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    _Recorder.seen = []
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(BackgroundHTTPServer(_Recorder))
        api = stack.enter_context(BackgroundHTTPServer(_redirecting(other.origin)))
        yield f"{api.origin}/api/v1", _Recorder.seen


def test_a_redirect_is_not_followed_and_is_said_as_one(
    project, run_cli, monkeypatch, redirect_to_another_host
):
    base, seen = redirect_to_another_host
    monkeypatch.setenv("NEBULA_API_KEY", KEY)
    monkeypatch.setenv("NEBULA_BASE_URL", base)
    project({"images.toml": nebula_manifest({"hero": {"prompt": "a cat", "output": "a.png"}})})
    code, out, err = run_cli("apply")
    assert code == 1
    assert seen == []  # the key went nowhere else
    assert KEY not in out + err
    assert "the API answered with a redirect (HTTP 307) to http://127.0.0.1:" in err, err
    assert "which nebula-build does not follow" in err and "/steal" not in err
