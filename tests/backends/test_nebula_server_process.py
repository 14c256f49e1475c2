"""`python -m nebula_build.testing`: the loopback Nebula API as a process a CI
pipeline starts to dry-run its paid path, driven through the real CLI."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import nebula_manifest

IMAGES = {
    "hero": {"prompt": "a lighthouse", "output": "img/hero.png"},
    "logo": {"prompt": "a fox", "output": "img/logo.png"},
}


def test_a_pipeline_can_dry_run_the_paid_path_against_the_server_process(
    project, run_cli, monkeypatch
):
    command = [
        sys.executable,
        "-m",
        "nebula_build.testing",
        "--key",
        "ak_dry_run",
        "--fault",
        "422",
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            name, _, base_url = server.stdout.readline().strip().partition("=")
            assert name == "NEBULA_BASE_URL" and base_url.startswith("http://127.0.0.1:")
            monkeypatch.setenv("NEBULA_BASE_URL", base_url)
            monkeypatch.setenv("NEBULA_API_KEY", "ak_dry_run")
            project({"images.toml": nebula_manifest(IMAGES, concurrency=1)})
            code, _, err = run_cli("apply", "--yes", "--max-generations", "2", "--max-cost", "1")
            assert code == 1  # the one fault asked for: one image fails, the other is made
            assert "1 image failed" in err and "HTTP 422" in err
            assert run_cli("apply", "--yes", "--max-cost", "1").code == 0
            monkeypatch.setenv("NEBULA_API_KEY", "ak_wrong")
            code, _, err = run_cli("apply", "--replace", "hero")
            assert code == 1 and "NEBULA_API_KEY was rejected" in err
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(10) == 0


def test_a_port_in_use_is_one_line():
    command = [sys.executable, "-m", "nebula_build.testing"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as first:
        try:
            assert first.stdout is not None
            port = first.stdout.readline().strip().rpartition(":")[2].partition("/")[0]
            second = subprocess.run(
                [*command, "--port", port], capture_output=True, text=True, timeout=30, check=False
            )
            assert second.returncode == 1
            assert second.stderr.startswith(f"error: --port {port}: ")
            assert second.stderr.count("\n") == 1
        finally:
            first.send_signal(signal.SIGTERM)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--fault", "5OO"),
        ("--fault", "timeout"),
        ("--fault", "slow:x"),
        ("--fault", "777"),
        ("--fault", "message:abc:text"),
        ("--port", "99999"),
        ("--port", "-1"),
    ],
)
def test_a_fault_or_port_it_cannot_serve_is_refused_before_it_starts(option, value):
    """A misspelt fault was served as a success, so a dry run passed where the pipeline
    meant to see an image fail; a bad number failed the request with a traceback on the
    server's side, and a port out of range was a traceback."""
    command = [sys.executable, "-m", "nebula_build.testing", option, value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert done.stdout == ""  # no NEBULA_BASE_URL: nothing is served
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"python -m nebula_build.testing: error: argument {option}: {value}: "
    )
