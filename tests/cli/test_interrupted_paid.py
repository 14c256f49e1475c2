"""An apply stopped (Ctrl-C, SIGTERM) while requests to a paid backend are in flight loses
their answers, but the provider may have billed them: the "interrupted" line says so,
once, naming them. A free backend's line is as it was (test_sigterm.py)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import nebula_manifest
from tests.engine.test_crash_and_lock import _wait_for

pytestmark = pytest.mark.slow

IMAGES = {
    "quick": {"prompt": "answered at once", "output": "quick.png"},
    "free": {"prompt": "offline", "output": "free.png", "backend": "preview"},
    "slow-a": {"prompt": "never answered a", "output": "a.png"},
    "slow-b": {"prompt": "never answered b", "output": "b.png"},
}
PREFIX = (
    "interrupted with 2 of 4 images finished (what they made is kept); "
    "`nebula-build apply` again does the rest"
)


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_paid_apply_says_the_requests_in_flight_may_have_been_billed(
    sent, project, nebula_server
):
    root = project({"images.toml": nebula_manifest(IMAGES, timeout=60, concurrency=4)})
    nebula_server.add_faults("slow:20", prompt="never answered")
    nebula_server.add_faults("slow:20", prompt="never answered")
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply", "--yes"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: (root / "quick.png").exists() and (root / "free.png").exists())
        _wait_for(lambda: len(nebula_server.generations) == 3)
        process.send_signal(sent)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == (
        f"{PREFIX}; the requests in flight may have been billed: 2 to nebula (slow-a, slow-b)"
    ), err
    assert err.count("billed") == 1
    assert "Traceback" not in err


def test_watch_stopped_mid_round_says_the_requests_in_flight_may_have_been_billed(
    project, nebula_server
):
    images = {name: IMAGES[name] for name in ("quick", "slow-a")}
    root = project({"images.toml": nebula_manifest(images, timeout=60, concurrency=4)})
    nebula_server.add_faults("slow:20", prompt="never answered")
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for((root / "quick.png").exists)
        _wait_for(lambda: len(nebula_server.generations) == 2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == (
        "stopped with 1 of 2 images finished (what they made is kept); "
        "the request in flight may have been billed: 1 to nebula (slow-a)"
    ), out
    assert "Traceback" not in out + err
