"""Crash safety (SIGKILL mid-apply) and the project lock, with real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nebula_build.fsutil import TEMP_MARKER
from nebula_build.state.lockfile import loads
from tests.conftest import fake_manifest, generation_log

pytestmark = pytest.mark.slow


def _spawn(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nebula_build", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _journal_lines(root: Path) -> int:
    try:
        return len((root / ".nebula-build/journal").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def test_sigkill_mid_apply_loses_no_finished_image(project, fake_site, tmp_path, run_cli):
    log = tmp_path / "gen.log"
    images = {f"i{n:02}": {"prompt": f"p{n}", "output": f"out/i{n:02}.png"} for n in range(30)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.1, concurrency=2)})
    process = _spawn(root, "apply")
    _wait_for(lambda: _journal_lines(root) >= 5)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    # A lock rewrite (about once a second) empties the journal: the kill may land just
    # after one, when the lock holds every finished image and there is nothing to fold.
    journaled = _journal_lines(root) > 0

    finished = {p.stem for p in (root / "out").glob("*.png")}
    assert 5 <= len(finished) < 30
    code, out, err = run_cli("plan")
    assert ("interrupted apply" in err) == journaled
    locked = set(loads((root / "images.lock").read_text()))
    # Every recorded image is on disk. Images renamed into place whose journal line was
    # not written yet are on disk but unrecorded: the next apply recognises them.
    assert locked <= finished
    started = len(generation_log(log))

    assert run_cli("apply").code == 0
    regenerated = generation_log(log)[started:]
    # Nothing on disk is paid for twice; an image whose original reached the cache before
    # the kill is created from it without a generation.
    assert set(regenerated).isdisjoint(finished)
    # At most the generations in flight at the kill (concurrency 2) are paid for twice.
    assert len(generation_log(log)) <= len(images) + 2
    assert not [p for p in root.rglob("*") if TEMP_MARKER in p.name]
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_second_apply_is_refused_naming_the_holder(project, fake_site, tmp_path, run_cli):
    log = tmp_path / "gen.log"
    images = {f"i{n}": {"prompt": f"p{n}", "output": f"i{n}.png"} for n in range(6)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.3, concurrency=1)})
    first = _spawn(root, "apply")
    _wait_for(log.exists)
    code, _, err = run_cli("apply")
    assert code == 1
    assert f"pid {first.pid}" in err and "--lock-timeout" in err
    # plan still works while apply runs, reading its journal without folding it
    assert run_cli("plan").code == 0
    code, _, err = run_cli("apply", "--lock-timeout", "30")
    assert code == 0, err
    first.communicate(timeout=30)
    assert first.returncode == 0
    assert sorted(generation_log(log)) == sorted(images)


def test_lock_of_a_dead_process_is_taken_over(project, fake_site, tmp_path, run_cli):
    log = tmp_path / "gen.log"
    root = project(
        {"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}}, delay=5)}
    )
    process = _spawn(root, "apply")
    _wait_for(log.exists)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    (root / "images.toml").write_text(fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}}))
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert f"took over the project lock left by pid {process.pid}" in err


def test_temp_files_of_a_killed_run_are_removed(project, run_cli):
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n'
            '[images.a]\nprompt = "x"\nwidth = 64\nheight = 64\n'
            'output = "img/a.png"\n'
        }
    )
    leftover = root / "img" / f".a.png{TEMP_MARKER}dead"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a png")
    assert run_cli("apply").code == 0
    assert not leftover.exists()


def test_interrupt_leaves_the_lock_consistent(project, fake_site, tmp_path, run_cli):
    log = tmp_path / "gen.log"
    images = {f"i{n:02}": {"prompt": f"p{n}", "output": f"i{n:02}.png"} for n in range(20)}
    root = project({"images.toml": fake_manifest(log, images, delay=0.1, concurrency=2)})
    process = _spawn(root, "apply")
    _wait_for(lambda: _journal_lines(root) >= 3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=10)
    assert process.returncode == 130, err
    assert not (root / ".nebula-build/journal").exists()
    locked = set(loads((root / "images.lock").read_text()))
    written = {p.stem for p in root.glob("*.png")}
    assert locked == written and len(locked) >= 3
    assert "Traceback" not in err
