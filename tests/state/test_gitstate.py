"""The unmerged paths of a git index, read as `git status` reads them (no git to run),
in each index version git writes."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from nebula_build.state.gitstate import unmerged


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "user.email=a@b", "-c", "user.name=a", *args],
        cwd=root,
        check=True,
        capture_output=True,
        env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"},
    )


def _conflicted(root: Path) -> None:
    """A merge that leaves two files of site/ (and one outside it) unmerged, beside
    files of site/ that merged cleanly, whose paths share their beginnings."""
    site = root / "site"
    (site / "img").mkdir(parents=True)
    files = ["site/img/hero.png", "site/img/hero-2.png", "site/images.lock", "top.txt"]
    _git(root, "init", "-q", "-b", "main")
    for branch, text in (("base", "0"), ("feat", "1"), ("main", "2")):
        if branch == "feat":
            _git(root, "checkout", "-qb", "feat")
        elif branch == "main":
            _git(root, "checkout", "-q", "main")
        for name in files:
            (root / name).write_text(text if name != "site/img/hero-2.png" else "same")
        _git(root, "add", "-A")
        _git(root, "commit", "-qm", branch)
    with pytest.raises(subprocess.CalledProcessError):
        _git(root, "merge", "feat")


@pytest.mark.parametrize("version", ["2", "3", "4"])
def test_the_unmerged_paths_under_the_project(tmp_path, version):
    _conflicted(tmp_path)
    _git(tmp_path, "update-index", "--index-version", version)
    assert unmerged(tmp_path / "site") == ["images.lock", "img/hero.png"]
    assert unmerged(tmp_path) == ["site/images.lock", "site/img/hero.png", "top.txt"]


def test_an_index_it_cannot_read_is_none(tmp_path):
    _conflicted(tmp_path)
    (tmp_path / ".git/index").write_bytes(b"DIRC\0\0\0\2\0\0\0\5" + b"\0" * 30)
    assert unmerged(tmp_path) is None


def _entry(flags: int, path: bytes) -> bytes:
    """A version 4 index entry: stat fields, object name, flags, then its path."""
    return bytes(40) + bytes(20) + struct.pack(">H", flags) + path


def test_a_crafted_index_is_refused(tmp_path):
    """A review found: a v4 path's length prefix of 100 KB of continuation bytes took
    seconds (quadratic), and paths each one byte longer than the last, at a stage
    other than 0, took 500 MB from a 2 MB index."""
    endless = b"DIRC" + struct.pack(">II", 4, 2) + _entry(0x1001, b"\0a\0")
    endless += _entry(0x1001, b"\x80" * 100_000)
    growing = b"DIRC" + struct.pack(">II", 4, 100_000)
    growing += _entry(0x1001, b"\0a\0") + b"".join(_entry(0x1001, b"\0b\0") for _ in range(99_999))
    for index in (endless, growing):
        (tmp_path / ".git").mkdir(exist_ok=True)
        (tmp_path / ".git/index").write_bytes(index)
        assert unmerged(tmp_path) is None
