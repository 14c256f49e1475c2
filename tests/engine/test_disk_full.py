"""A full disk (ENOSPC, EFBIG) through the CLI: one line naming the path, no lost
generation, no corrupt lock, no temp file left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nebula_build.fsutil import TEMP_MARKER
from nebula_build.state.lockfile import loads
from tests.manifests import PREVIEW

MANIFEST = (
    PREVIEW
    + """
[images.a]
prompt = "a lighthouse"
output = "out/a.png"
"""
)


@pytest.fixture
def disk_full_for(monkeypatch: pytest.MonkeyPatch):
    """Make fsync fail with `code` for files whose path contains `fragment`, as a
    full disk does when the data finally has to land."""
    real = os.fsync

    def install(fragment: str, code: int = errno.ENOSPC) -> None:
        def fsync(fd: int) -> None:
            if fragment in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(code, os.strerror(code))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    yield install
    monkeypatch.setattr(os, "fsync", real)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_MARKER in p.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_an_output_that_cannot_be_written_is_one_line_and_the_image_stays_cached(
    project, run_cli, disk_full_for, code
):
    root = project({"images.toml": MANIFEST})
    disk_full_for("/out/", code)
    result = run_cli("apply")
    assert result.code == 1
    assert f"could not write out/a.png: {os.strerror(code)}" in result.err
    assert "Traceback" not in result.err
    assert not temp_files(root)
    assert not (root / "out/a.png").exists()
    disk_full_for("\0never")  # space is back
    _, out, _ = run_cli("plan")
    assert "(from cache, no generation)" in out  # the paid generation was kept
    assert run_cli("apply").code == 0
    assert (root / "out/a.png").exists()


def test_a_lock_that_cannot_be_written_stays_intact_and_the_journal_keeps_the_work(
    project, run_cli, disk_full_for
):
    root = project({"images.toml": MANIFEST})
    assert run_cli("apply").code == 0
    before = (root / "images.lock").read_text()
    (root / "images.toml").write_text(MANIFEST.replace("a lighthouse", "a lamp"))
    disk_full_for("images.lock")
    result = run_cli("apply")
    assert result.code == 1
    assert "could not write images.lock: No space left on device" in result.err
    assert result.err.count("error:") == 1 and "Traceback" not in result.err
    assert (root / "images.lock").read_text() == before
    assert loads(before)
    assert not temp_files(root)
    disk_full_for("\0never")
    code, _, err = run_cli("plan")
    assert code == 0 and "interrupted apply" in err
    assert "a lamp" in (root / "images.lock").read_text()
    assert run_cli("plan").out.startswith("No changes")


def test_a_generation_the_cache_cannot_take_is_kept_outside_and_used_next(
    project, run_cli, disk_full_for, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    root = project({"images.toml": MANIFEST})
    disk_full_for("/proj/")  # the whole project's disk is full: cache and outputs
    result = run_cli("apply")
    assert result.code == 1
    assert "could not write out/a.png: No space left on device" in result.err
    assert "the cache could not take the generation (No space left on device)" in result.err
    assert str(tmp_path / "user-cache/nebula-build/rescue") in result.err
    assert not temp_files(root)
    rescued = tmp_path / "user-cache/nebula-build/rescue"
    assert oct(rescued.stat().st_mode & 0o777) == "0o700"
    disk_full_for("\0never")
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert "(from cache, no generation)" in result.err and "(0 generated)" in result.out
    assert not [p for p in rescued.rglob("*") if p.is_file()]  # moved into the project


def test_when_only_the_cache_is_full_the_image_is_written_with_a_warning(
    project, run_cli, disk_full_for, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    root = project({"images.toml": MANIFEST})
    disk_full_for("/.nebula-build/cache/")
    result = run_cli("apply")
    assert result.code == 0, result.err
    assert "the cache could not take the generation" in result.err
    assert (root / "out/a.png").exists()
