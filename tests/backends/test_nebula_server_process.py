"""`python -m nebula_build.testing`: the loopback Nebula API as a process a CI
pipeline starts to dry-run its paid path, driven through the real CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

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


def _documented_dry_run() -> str:
    """The shell block of docs/ci.md's "Dry-run the paid path"."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text(encoding="utf-8")
    section = text.split("## Dry-run the paid path", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_documented_dry_run_waits_for_a_slow_server(project, tmp_path):
    """On a busy runner the server takes a while to start: the documented lines must
    not send the apply to a port nobody listens on yet (its price list then fails,
    and --max-cost refuses an unknown price)."""
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "python").write_text(f'#!/bin/sh\nsleep 2\nexec "{sys.executable}" "$@"\n')
    (slow / "python").chmod(0o755)
    root = project({"images.toml": nebula_manifest(IMAGES, concurrency=1)})
    script = _documented_dry_run().replace("8790", str(_free_port()))
    env = {**os.environ, "PATH": f"{slow}{os.pathsep}{os.environ['PATH']}"}
    env.pop("NEBULA_BASE_URL", None)
    log = tmp_path / "step.log"
    with log.open("w") as output:  # a file, not a pipe the server would hold open
        step = subprocess.Popen(
            ["bash", "-c", script],
            cwd=root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            step.wait(60)
        finally:  # the server too, had the lines left it running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step.pid, signal.SIGTERM)
    text = log.read_text()
    assert "could not fetch its price list" not in text
    assert "1 image failed" in text and "HTTP 500" in text  # the --fault asked for
    assert "Traceback" not in text


def test_the_documented_dry_run_leaves_the_team_s_remote_cache_alone(project, tmp_path):
    """A job's remote cache (the GitHub example sets it for every job) had been filled
    with the stand-in's placeholders under the real images' keys: every later paid
    apply restored them from the remote cache, for free and without a word."""
    remote = tmp_path / "remote"
    remote.mkdir()
    root = project({"images.toml": nebula_manifest(IMAGES, concurrency=1)})
    script = _documented_dry_run().replace("8790", str(_free_port()))
    env = {**os.environ, "NEBULA_BUILD_CACHE_REMOTE": remote.as_uri()}
    env.pop("NEBULA_BASE_URL", None)
    log = tmp_path / "step.log"
    with log.open("w") as output:
        step = subprocess.Popen(
            ["bash", "-c", script],
            cwd=root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            step.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step.pid, signal.SIGTERM)
    text = log.read_text()
    assert "1 done (1 generated)" in text  # the other image: the --fault
    assert "note: 1 placeholder not uploaded: made by the stand-in for the API" in text
    assert list(remote.rglob("*")) == []
    assert "--offline" not in script  # the job's own apply line, as it is
