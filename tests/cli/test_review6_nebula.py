"""Where a redirect points, and the address nothing reached, are said as a URL to set
NEBULA_BASE_URL to: an IPv6 address in brackets, never a password, nothing a
terminal obeys."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from nebula_build.httpthread import BackgroundHTTPServer
from tests.cli.test_attack2_redirect import KEY, _redirecting
from tests.conftest import nebula_manifest

HERO = {"hero": {"prompt": "a cat", "output": "a.png"}}


@contextlib.contextmanager
def _api_redirecting_to(location: str) -> Iterator[str]:
    with BackgroundHTTPServer(_redirecting(location)) as api:
        yield f"{api.origin}/api/v1"


@pytest.mark.parametrize(
    ("location", "said"),
    [
        ("https://[2001:db8::1]:8443", "to https://[2001:db8::1]:8443, which"),
        ("https://[::1]", "to https://[::1], which"),
        (f"https://user:{KEY}@api.example:444", "to https://api.example:444, which"),
        ("https://ev\x1b[2Jil.example", "(HTTP 307), which nebula-build does not follow"),
    ],
)
def test_a_redirect_names_where_it_points_as_a_url(location, said, project, run_cli, monkeypatch):
    with _api_redirecting_to(location) as base:
        monkeypatch.setenv("NEBULA_API_KEY", KEY)
        monkeypatch.setenv("NEBULA_BASE_URL", base)
        project({"images.toml": nebula_manifest(HERO)})
        code, out, err = run_cli("apply")
    assert code == 1
    assert said in err, err
    assert "may have been billed" not in err
    assert KEY not in out + err
    assert "\x1b" not in out + err


def test_an_ipv6_address_nothing_reached_is_said_in_brackets(project, run_cli, monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", KEY)
    monkeypatch.setenv("NEBULA_BASE_URL", "http://[::1]:9/api/v1")
    project(
        {
            "images.toml": nebula_manifest(HERO).replace(
                "[backends.nebula]", "[backends.nebula]\nmax_attempts = 1"
            )
        }
    )
    code, _, err = run_cli("models", "--remote")
    assert code == 1
    assert "is the API listening at http://[::1]:9/api/v1 (NEBULA_BASE_URL)?" in err, err
