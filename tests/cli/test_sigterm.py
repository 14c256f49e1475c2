"""SIGTERM (CI cancelling a job, `docker stop`) stops a command the way Ctrl-C does."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nebula_build.state.lockfile import loads
from tests.conftest import fake_manifest, generation_log
from tests.engine.test_crash_and_lock import _journal_lines, _wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def spawn():
    """Starts `python -m nebula_build ARGS` in a folder; kills what is left at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(root: Path, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "nebula_build", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # a process that does not stop dumps where each thread was (`_stopped`)
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _stopped(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Its stdout and stderr once it ended; where it did not end within `timeout`, the
    test fails with the stack of each of its threads (SIGABRT makes faulthandler say
    them), not only with "timed out"."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate()
        pytest.fail(f"still running {timeout:g}s after the signal:\n{out}\n{err}")


def _has_open(pid: int, path: Path) -> bool:
    folder = Path(f"/proc/{pid}/fd")
    try:
        return any(Path(os.readlink(fd)) == path for fd in folder.iterdir())
    except OSError:  # a descriptor closed while we looked
        return False


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_mid_apply_finishes_writes_and_folds_the_journal_like_sigint(
    sent, project, fake_site, tmp_path, run_cli, spawn
):
    log = tmp_path / "gen.log"
    images = {f"i{n:02}": {"prompt": f"p{n}", "output": f"i{n:02}.png"} for n in range(20)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.1, concurrency=2)})
    process = spawn(root, "apply")
    _wait_for(lambda: _journal_lines(root) >= 3)
    process.send_signal(sent)
    _, err = _stopped(process, 20)
    assert process.returncode == 130, err
    said = re.fullmatch(
        r"interrupted with (\d+) of 20 images finished \(what they made is kept\); "
        r"`nebula-build apply` again does the rest",
        err.splitlines()[-1],
    )
    assert said is not None, err
    assert "Traceback" not in err
    assert not (root / ".nebula-build/journal").exists()  # folded into images.lock
    locked = set(loads((root / "images.lock").read_text()))
    written = {p.stem for p in root.glob("*.png")}
    assert locked == written and 3 <= len(locked) < 20
    assert int(said.group(1)) <= len(locked)  # a finished image is recorded first
    # The project lock was released, not left for the next run to take over.
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert "took over" not in err and "interrupted" not in err
    assert set(loads((root / "images.lock").read_text())) == set(images)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_sigterm_while_waiting_for_the_project_lock(project, fake_site, tmp_path, spawn):
    log = tmp_path / "gen.log"
    root = project(
        {"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}}, delay=30)}
    )
    first = spawn(root, "apply")
    _wait_for(log.exists)
    second = spawn(root, "apply", "--lock-timeout", "60")
    # Once it has the lock file open, it is waiting for the lock: plain (not async) code.
    _wait_for(lambda: _has_open(second.pid, root / ".nebula-build/lock"))
    second.send_signal(signal.SIGTERM)
    _, err = _stopped(second, 20)
    assert second.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    first.send_signal(signal.SIGTERM)  # the generation under way is cancelled
    _, err = _stopped(first, 20)
    assert first.returncode == 130, err
    assert "Traceback" not in err


def test_sigterm_stops_watch_like_ctrl_c(project, fake_site, tmp_path, spawn):
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(8)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.5, concurrency=2)})
    process = spawn(root, "watch")
    _wait_for(lambda: len(generation_log(log)) >= 3)
    process.send_signal(signal.SIGTERM)
    out, err = _stopped(process, 10)
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert set(loads((root / "images.lock").read_text())) == {p.stem for p in root.glob("*.png")}
    assert not (root / ".nebula-build/journal").exists()


def test_closing_the_terminal_stops_watch_like_ctrl_c(project, fake_site, tmp_path, spawn):
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(8)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.5, concurrency=2)})
    process = spawn(root, "watch")
    _wait_for(lambda: len(generation_log(log)) >= 3)
    process.send_signal(signal.SIGHUP)
    out, err = _stopped(process, 10)
    assert process.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert set(loads((root / "images.lock").read_text())) == {p.stem for p in root.glob("*.png")}
    assert not (root / ".nebula-build/journal").exists()  # folded, not left for recovery


def test_watch_stopped_soon_after_a_round_leaves_the_snapshot_of_its_last_lock(
    project, fake_site, tmp_path, spawn
):
    """The lock's snapshot waits for a quiet spell while watch runs; stopping before
    it came must not leave the snapshot of an older lock (the next command would
    parse the whole lock again)."""
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(3)}
    root = project({"images.toml": fake_manifest(log, images)})
    process = spawn(root, "watch")
    _wait_for(lambda: len(generation_log(log)) >= 3 and (root / "images.lock").exists())
    time.sleep(0.5)
    manifest = root / "images.toml"
    manifest.write_text(manifest.read_text().replace('"p1"', '"p1, again"'))
    _wait_for(lambda: len(generation_log(log)) >= 4)
    lock = root / "images.lock"
    _wait_for(lambda: "p1, again" in lock.read_text())
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    out, err = _stopped(process, 20)
    assert process.returncode == 0, err
    snapshot = (root / ".nebula-build/lock-snapshot.json").read_bytes()
    assert hashlib.sha256(lock.read_bytes()).hexdigest().encode() in snapshot


def test_main_puts_the_previous_sigterm_handler_back(project, run_cli):
    project({"images.toml": "version = 1\n"})

    def mine(signum, frame):  # pragma: no cover - never called
        raise AssertionError

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert run_cli("validate").code == 0
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_sigterm_stays_ignored(project, run_cli):
    project({"images.toml": "version = 1\n"})
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert run_cli("validate").code == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_a_rename_cycle_stopped_halfway_keeps_every_entry_under_one_name(
    project, fake_site, tmp_path, run_cli, spawn, stop
):
    """a, b and c renamed round a cycle, each to generate, one at a time; stopped once
    the first is recorded: the names left unfinished take over the entries they were to
    take over as they were, so no output is recorded by two names and every earlier
    entry, with its history, lives on (the first took over an entry whose own name kept
    it). Killed (SIGKILL: an OOM kill, the runner gone), no `finally` runs, so each lock
    written on the way must already be whole: the next plan refused the lock (a and b
    both recorded o/a.png) and the entry of o/b.png, with its history, was gone."""
    from tests.cli.test_rename import THREE, _applied_twice, _forget_generation, _lock, _swap

    log = tmp_path / "log"
    root = _applied_twice(project, run_cli, log, THREE)
    before = _lock(root)
    for name in THREE:
        _forget_generation(root, name)
    _swap(root, "a", "b", "c")
    manifest = root / "images.toml"
    text = manifest.read_text()
    manifest.write_text(
        text.replace("delay = 0.0", "delay = 2.0").replace("concurrency = 4", "concurrency = 1")
    )
    process = spawn(root, "apply")
    journal = root / ".nebula-build/journal"
    # the first recorded: the lock rewritten, or its line in the journal
    _wait_for(lambda: _lock(root) != before or (journal.exists() and journal.stat().st_size > 0))
    process.send_signal(stop)
    _, err = _stopped(process, 20)
    assert process.returncode == (130 if stop == signal.SIGINT else -signal.SIGKILL), err
    code, out, err = run_cli("status")  # folds a killed run's journal into the lock
    assert "both record" not in err, err
    after = _lock(root)
    outputs = [entry["output"] for entry in after.values()]
    assert len(outputs) == len(set(outputs)) == 3, after
    kept = sorted((entry["output"], str(entry["history"])) for entry in after.values())
    assert kept == sorted((entry["output"], str(entry["history"])) for entry in before.values())

    manifest.write_text(text)
    code, out, err = run_cli("apply")
    assert code == 0, out + err
    assert run_cli("plan", "--detailed-exitcode").code == 0
