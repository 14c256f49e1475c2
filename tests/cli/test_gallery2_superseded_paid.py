"""A watch round whose requests to a paid backend a newer edit cut off (superseded in
flight) loses their answers, but the provider may have billed them: the round's line
says so, once, naming them; `stopped` does not say them again. A free backend's
superseded round says nothing of billing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import nebula_manifest
from tests.engine.test_crash_and_lock import _wait_for

pytestmark = pytest.mark.slow

IMAGES = {
    "quick": {"prompt": "answered at once", "output": "quick.png"},
    "slow-a": {"prompt": "never answered a", "output": "a.png"},
}


def _watch(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        process.send_signal(signal.SIGINT)
        return process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_a_round_superseded_in_flight_says_the_requests_may_have_been_billed(
    project, nebula_server
):
    root = project({"images.toml": nebula_manifest(IMAGES, timeout=60, concurrency=4)})
    nebula_server.add_faults("slow:20", prompt="never answered")
    process = _watch(root)
    try:
        _wait_for((root / "quick.png").exists)
        _wait_for(lambda: len(nebula_server.generations) == 2)
        edited = dict(IMAGES, **{"slow-a": {"prompt": "answered now a", "output": "a.png"}})
        (root / "images.toml").write_text(nebula_manifest(edited, timeout=60, concurrency=4))
        _wait_for((root / "a.png").exists)
        time.sleep(0.5)  # round 2 says its line
    finally:
        out, err = _stop(process)
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert rounds[0].startswith("round 1: 1 done (1 generated), 1 superseded in "), out
    assert rounds[0].endswith(
        "s; the request in flight may have been billed: 1 to nebula (slow-a)"
    ), out
    assert rounds[1].startswith("round 2: 1 done (1 generated) in "), out
    assert out.count("billed") == 1 and out.splitlines()[-1] == "stopped", out
    assert "Traceback" not in out + err
