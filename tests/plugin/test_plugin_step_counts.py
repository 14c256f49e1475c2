"""How a plugin's denoising steps reach the status line: its counts may be numpy or
torch integers, and a scheduler may count one step past its total."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.plugin.conftest import plugin_source, process_environment

COUNTING = plugin_source(
    "counting",
    """
    async def generate(self, request):
        import numpy
        steps = {"numpy": (numpy.int64(2), numpy.int32(4)), "past": (5, 4), "bool": (True, 4)}
        request.on_step(*steps[request.prompt])
        await asyncio.sleep(0.3)  # the status line is drawn
        return GenerationResult(png(request))
    """,
)

MANIFEST = """version = 1
[defaults]
backend = "counting"
model = "black-forest-labs/FLUX.1-schnell"
[images.counted]
prompt = "{prompt}"
width = 64
height = 64
output = "counted.png"
"""


def _status_shown(sites: list[Path], root: Path) -> str:
    """What `apply` wrote to a terminal, in color (its stderr a pseudo-terminal: the
    status line is drawn only there)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "apply", "--yes"],
        cwd=root,
        env={**process_environment(sites), "NO_COLOR": "", "FORCE_COLOR": "1"},
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    try:
        while select.select([leader], [], [], 30)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the process ended: the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
        assert process.wait(timeout=30) == 0, shown
    return shown.decode(errors="replace")


def test_a_numpy_step_count_is_shown(install, project, sites):
    """numpy.int64 steps were dropped: the status line never said the step."""
    install("counting", COUNTING)
    root = project({"images.toml": MANIFEST.format(prompt="numpy")})
    assert "counted (step 2/4)" in _status_shown(sites, root)


def test_a_step_past_the_total_is_shown_as_the_last(install, project, sites):
    """A scheduler's extra step (5 of 4) was dropped."""
    install("counting", COUNTING)
    root = project({"images.toml": MANIFEST.format(prompt="past")})
    assert "counted (step 4/4)" in _status_shown(sites, root)


def test_a_bool_is_no_step_count(install, project, sites):
    install("counting", COUNTING)
    root = project({"images.toml": MANIFEST.format(prompt="bool")})
    shown = _status_shown(sites, root)
    assert "working on counted" in shown and "(step " not in shown
