"""apply deletes the temp files a killed run left, and never one that another running
process is writing (`gallery` writing its page, an apply of another manifest writing
its lock in the same folder): that process's rename would then fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nebula_build.fsutil import TEMP_FILE_LIFETIME_S, TEMP_MARKER, atomic_write
from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '[images.a]\nprompt = "a calm sea"\noutput = "img/a.png"\n'


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of a process that runs while the test does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def _temp(folder: Path, name: str, pid: int) -> Path:
    temp = folder / f".{name}{TEMP_MARKER}{pid}-0123abcd"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half written")
    return temp


def test_a_running_processs_temp_files_are_left_to_it(project, run_cli, live_pid):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(MANIFEST.replace("calm", "stormy"), encoding="utf-8")
    page = _temp(root / ".nebula-build" / "gallery", "index.html", live_pid)
    other_lock = _temp(root, "other.lock", live_pid)
    output = _temp(root / "img", "b.png", live_pid)
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert page.exists() and other_lock.exists() and output.exists()


def test_a_dead_processs_temp_files_are_removed(project, run_cli, live_pid):
    root = project({"images.toml": MANIFEST})
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    left = [
        _temp(root / ".nebula-build" / "gallery", "index.html", pid),
        _temp(root, "images.lock", pid),
        _temp(root / "img", "a.png", pid),
        _temp(root / "img", "b.png", os.getpid()),  # this id, but no write of this process
        _temp(root / "img", "c.png", 0),
    ]
    stale = _temp(root / "img", "d.png", live_pid)  # its id may be another program's by now
    an_hour_ago = time.time() - TEMP_FILE_LIFETIME_S - 60
    os.utime(stale, (an_hour_ago, an_hour_ago))
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert not [path for path in (*left, stale) if path.exists()]


def test_the_tools_own_writes_leave_no_temp_file(tmp_path: Path):
    atomic_write(tmp_path / "state.json", b"{}")
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]
