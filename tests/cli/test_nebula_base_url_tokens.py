"""A token in NEBULA_BASE_URL that is no declared secret (a path segment, a query, a
password) never reaches what nebula-build says or writes: a URL is named by its scheme,
host and port, its path only where it is the documented /api/v1."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.conftest import CANARY_KEY, nebula_manifest

TOKEN = "tok3n-0f-the-pr0xy-a1b2c3"
HERO = {"hero": {"prompt": "a cat", "output": "a.png"}}


def _closed_port() -> int:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return int(closed.getsockname()[1])


def _leaked_into(root: Path) -> list[str]:
    """The files under `root` that hold the token."""
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and TOKEN.encode() in path.read_bytes()
    ]


def _run(run_cli, root: Path) -> str:
    """apply, plan and models --remote: everything said, each checked to end cleanly."""
    said = ""
    for command in (("apply", "--yes"), ("plan",), ("models", "--remote")):
        code, out, err = run_cli(*command)
        assert code in (0, 1, 2), (command, code)
        assert "Traceback" not in out + err
        said += out + err
    assert _leaked_into(root) == []
    return said


def _project(project) -> Path:
    return project({"images.toml": nebula_manifest(HERO, max_attempts=1)})


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (f"/t/{TOKEN}/api/v1", "/…/api/v1"),
        (f"/{TOKEN}", "/…"),
        (f"/api/v1#{TOKEN}", "/api/v1"),
    ],
    ids=["segment", "whole-path", "fragment"],
)
def test_a_token_in_the_path_nothing_reached_is_not_said(
    path, shown, project, run_cli, monkeypatch
):
    port = _closed_port()
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    monkeypatch.setenv("NEBULA_BASE_URL", f"http://127.0.0.1:{port}{path}")
    said = _run(run_cli, _project(project))
    assert TOKEN not in said
    assert f"is the API listening at http://127.0.0.1:{port}{shown} (NEBULA_BASE_URL)?" in said


def test_a_token_in_the_path_of_a_base_url_that_answers_404_is_not_said(
    project, run_cli, nebula_server, monkeypatch
):
    origin = nebula_server.base_url.removesuffix("/api/v1")
    monkeypatch.setenv("NEBULA_BASE_URL", f"{origin}/t/{TOKEN}")
    said = _run(run_cli, _project(project))
    assert TOKEN not in said
    assert (
        f"hero: HTTP 404 (not found) from {origin}/…/images/generation: the API's documented "
        f"base URL is https://api.nebulablock.com/api/v1; did you mean "
        f"NEBULA_BASE_URL={origin}/…/api/v1?"
    ) in said, said
    assert nebula_server.generations  # it was asked


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://127.0.0.1:9/api/v1?token={TOKEN}", "must not hold a query (?…)"),
        (f"http://user:{TOKEN}@127.0.0.1:9/api/v1", "must not hold a user name or password"),
    ],
    ids=["query", "password"],
)
def test_a_base_url_with_a_query_or_a_password_is_refused_without_it(
    url, problem, project, run_cli, monkeypatch
):
    monkeypatch.setenv("NEBULA_API_KEY", CANARY_KEY)
    monkeypatch.setenv("NEBULA_BASE_URL", url)
    root = _project(project)
    code, out, err = run_cli("apply", "--yes")
    assert code == 1
    assert err.startswith(f"error: NEBULA_BASE_URL {problem}"), err
    said = _run(run_cli, root)
    assert TOKEN not in out + err + said
