"""The issue-16 benchmark runs end to end, and reads a child's own peak memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from _common import nebula_build, run_output, run_timed


@pytest.mark.skipif(shutil.which("time") is None, reason="GNU time reads the child's peak")
def test_a_childs_peak_memory_is_its_own_not_the_benchmarks(tmp_path):
    ballast = b"\1" * (150 << 20)  # written, so every page counts
    _, code, peak = run_timed([sys.executable, "-c", "pass"], tmp_path)
    del ballast
    assert code == 0
    assert peak < 100  # wait4 alone reported at least the 150 MB this process holds


@pytest.mark.slow
def test_scale_bench_prints_every_figure_beside_its_goal(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "bench/scale.py"), "--sizes", "20", "--runs", "2"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for figure in ("per image", "plan ", "status ", "apply ", "floor ", "read, cold", "rewrite"):
        assert figure in out, figure
    assert "x floor" in out and "goal" in out
    assert re.search(r"watch: one prompt edited.*\n +[\d.]+ / +[\d.]+ / +[\d.]+ ms", out)
    gallery = re.search(r"gallery: page open.*\n +(.*)", out)
    assert gallery is not None
    opened = re.fullmatch(r"[\d.]+ / +[\d.]+ / +[\d.]+ ms", gallery[1].strip())
    if os.environ.get("NEBULA_BUILD_REQUIRE_BROWSER"):
        assert opened, gallery[1]
    else:
        assert opened or gallery[1].startswith("not measured ("), gallery[1]


def test_the_benchmarks_run_the_cli_as_a_user_does_and_read_its_output(tmp_path):
    """Not `python -m` (the project's folder would join sys.path and the no-op
    snapshot's context); the output is there to check what a command answered."""
    command = nebula_build("plan")
    assert "-m" not in command
    (tmp_path / "images.toml").write_text("version = 1\n")
    _, code, _, out = run_output(command, tmp_path)
    assert code == 0 and "No changes: 0 images up to date." in out
