"""apply deletes the temp files a killed run left, and never one that another running
process is writing (`gallery` writing its page, an apply of another manifest writing
its lock in the same folder, a container of its own whose process id is this one's):
that process's rename would then fail."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nebula_build.fsutil import TEMP_FILE_GRACE_S, TEMP_MARKER, atomic_write
from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '[images.a]\nprompt = "a calm sea"\noutput = "img/a.png"\n'

#: a process that writes `path` through the tool's own atomic write and stops half
#: way, until a line arrives on its standard input; with a second argument, it
#: writes under a temp name carrying that process id instead of its own
_HALF_WRITER = """
import os, sys
from pathlib import Path
from nebula_build import fsutil

path = Path(sys.argv[1])
if len(sys.argv) > 2:
    os.getpid = lambda: int(sys.argv[2])
with fsutil.atomic_stream(path) as handle:
    handle.write(b"first half ")
    handle.flush()
    print(next(path.parent.glob(f".{path.name}{fsutil.TEMP_MARKER}*")), flush=True)
    sys.stdin.readline()
    handle.write(b"second half")
"""

Writer = Callable[..., Path]


@pytest.fixture
def half_writer() -> Iterator[Writer]:
    """Starts processes stopped half way through writing a file; finishes them at the
    end of the test, checking that each one's rename succeeded."""
    started: list[tuple[subprocess.Popen[str], Path]] = []

    def start(path: Path, pid_in_name: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        arguments = [str(path)] + ([] if pid_in_name is None else [str(pid_in_name)])
        process = subprocess.Popen(
            [sys.executable, "-c", _HALF_WRITER, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        started.append((process, path))
        return Path(process.stdout.readline().strip())

    yield start
    for process, path in started:
        _, err = process.communicate("\n", timeout=30)
        assert process.returncode == 0, err
        assert path.read_bytes() == b"first half second half"


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The id of a process that runs while the test does."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def _dead_pid() -> int:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(dead.stdout)


def _temp(folder: Path, name: str, pid: int, data: bytes = b"half written") -> Path:
    temp = folder / f".{name}{TEMP_MARKER}{pid}-0123abcd"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(data)
    return temp


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_running_processs_temp_files_are_left_to_it(project, run_cli, half_writer):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(MANIFEST.replace("calm", "stormy"), encoding="utf-8")
    writing = [
        half_writer(root / ".nebula-build" / "gallery" / "index.html"),
        half_writer(root / "other.lock"),
        half_writer(root / "img" / "b.png"),
    ]
    for temp in writing:
        _age(temp, 2 * TEMP_FILE_GRACE_S)  # a slow write: only its lock tells
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert [temp for temp in writing if not temp.exists()] == []


def test_a_write_in_another_container_with_this_process_id_is_left_to_it(
    project, run_cli, half_writer
):
    """Two containers sharing a workspace both run the tool as pid 1: a temp file
    named with this process's id is not necessarily this process's."""
    root = project({"images.toml": MANIFEST})
    temp = half_writer(root / "other.lock", pid_in_name=os.getpid())
    assert f"{TEMP_MARKER}{os.getpid()}-" in temp.name
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert temp.exists()


def test_a_dead_processs_temp_files_are_removed(project, run_cli, live_pid):
    root = project({"images.toml": MANIFEST})
    pid = _dead_pid()
    left = [
        _temp(root / ".nebula-build" / "gallery", "index.html", pid),
        _temp(root, "images.lock", pid),
        _temp(root / "img", "a.png", pid),
        _temp(root / "img", "b.png", os.getpid()),  # this id, but no write of this process
        _temp(root / "img", "c.png", 0),
        _temp(root / "img", "d.png", live_pid),  # its id may be another program's by now
        _temp(root / "img", "e.png", 1),  # one a pull request committed: init runs forever
        _temp(root / "img", "f.png", pid, b""),  # killed before its first byte
    ]
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert [path for path in left if path.exists()] == []


def test_an_empty_temp_file_of_a_running_process_is_left_for_a_while(project, run_cli, live_pid):
    """Made, not yet locked: a write in the instant between the two."""
    root = project({"images.toml": MANIFEST})
    young = _temp(root / "img", "a.png", live_pid, b"")
    old = _temp(root / "img", "b.png", live_pid, b"")
    _age(old, 2 * TEMP_FILE_GRACE_S)
    assert run_cli("apply").code == 0
    assert young.exists() and not old.exists()


def test_the_tools_own_writes_leave_no_temp_file(tmp_path: Path):
    atomic_write(tmp_path / "state.json", b"{}")
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_a_write_that_locks_while_a_tidy_looks_waits_and_is_then_left_to_it(tmp_path):
    """The writer's lock used to give up when a tidy held its shared lock that
    moment, leaving the write unlocked: the next tidy deleted it mid-write."""
    import fcntl
    import threading

    from nebula_build.fsutil import hold_temp, left_by_a_dead_run

    temp = tmp_path / f".a.png{TEMP_MARKER}{os.getpid()}-0123abcd"
    writer = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    tidy = os.open(temp, os.O_RDONLY)
    fcntl.flock(tidy, fcntl.LOCK_SH)  # a tidy looking at the file this moment
    locked = threading.Event()
    thread = threading.Thread(target=lambda: (hold_temp(writer), locked.set()))
    thread.start()
    assert not locked.wait(0.2)
    os.close(tidy)
    assert locked.wait(5)
    thread.join()
    os.write(writer, b"first half")
    _age(temp, 2 * TEMP_FILE_GRACE_S)
    assert not left_by_a_dead_run(temp)
    os.close(writer)
    assert left_by_a_dead_run(temp)
