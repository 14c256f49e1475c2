"""Requests the nebula backend still holds back for its own pacing
(`requests_per_minute`) were never sent, so no one can bill them: an apply stopped
while they wait names only the requests that reached the server as maybe billed,
a retry of one that did (it timed out) included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import nebula_manifest
from tests.engine.test_crash_and_lock import _wait_for

pytestmark = pytest.mark.slow

IMAGES = {name: {"prompt": f"prompt of {name}", "output": f"{name}.png"} for name in "abc"}


@pytest.mark.parametrize(
    ("timeout", "sent"),
    [(60, 1), (1, 1)],
    ids=["first-one-in-flight", "first-one-timed-out-waiting-to-be-sent-again"],
)
def test_an_apply_stopped_says_only_the_requests_sent_may_have_been_billed(
    timeout, sent, project, nebula_server
):
    settings = {"timeout": timeout, "concurrency": 4, "requests_per_minute": 1}
    root = project({"images.toml": nebula_manifest(IMAGES, **settings)})
    nebula_server.add_faults("slow:30")  # the first request sent, whichever it is
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply", "--yes"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: len(nebula_server.generations) == sent)
        _wait_for(lambda: nebula_server.peak_in_flight == 1)
        if timeout == 1:  # the first try times out; its second waits its turn (60 s)
            time.sleep(2.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    first = nebula_server.generations[0].body["prompt"].removeprefix("prompt of ")
    assert process.returncode == 130, err
    assert err.splitlines()[-1].endswith(
        f"; the request in flight may have been billed: 1 to nebula ({first})"
    ), err
    assert len(nebula_server.generations) == 1
