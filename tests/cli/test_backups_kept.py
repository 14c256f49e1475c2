"""A copy under .nebula-build/backup/ is never lost: two runs in the same second (or a
folder a checkout brought under that second's name) never write over each other's
copy, the line after apply names the folder that holds it, and the copy is made
without following a link, whatever the file's size, with the file's permissions."""

from __future__ import annotations

import json
import stat
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from nebula_build.state.guard import Guard
from nebula_build.state.project import Project
from tests.cli.test_trust_paths import A, manifest

STAMP = "20250102T030405Z"


@pytest.fixture
def same_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every backup folder is named in one second, whatever the runs take."""
    real = time.strftime

    def strftime(form: str, *when: time.struct_time) -> str:
        return STAMP if form == "%Y%m%dT%H%M%SZ" else real(form, *when)

    monkeypatch.setattr(time, "strftime", strftime)


def backed_up(root: Path) -> dict[str, bytes]:
    """Each copy, by its path under .nebula-build/backup/."""
    folder = root / ".nebula-build/backup"
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def force_over_a_hand_edit(root: Path, run_cli, drawn: bytes) -> str:
    """Draw over out/a.png by hand, then `apply --force`; what it says."""
    (root / "out/a.png").write_bytes(drawn)
    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    assert (root / "out/a.png").read_bytes() != drawn
    return out + err


def test_two_applies_in_one_second_keep_both_copies(project, run_cli, same_second):
    """Before: the second copy replaced the first in .nebula-build/backup/<second>/, so
    the first drawing was lost, and the first apply's line named a folder that no
    longer held it."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    first = force_over_a_hand_edit(root, run_cli, b"drawn by hand, first")
    assert f"1 replaced file backed up in .nebula-build/backup/{STAMP}/" in first
    second = force_over_a_hand_edit(root, run_cli, b"drawn by hand, second")
    assert f"1 replaced file backed up in .nebula-build/backup/{STAMP}-2/" in second
    assert backed_up(root) == {
        f"{STAMP}/out/a.png": b"drawn by hand, first",
        f"{STAMP}-2/out/a.png": b"drawn by hand, second",
    }


@pytest.mark.parametrize("kind", ["folder", "link out", "file"])
def test_a_backup_folder_a_checkout_brought_is_never_written_into(
    project, run_cli, same_second, tmp_path, kind
):
    """A pull request may commit .nebula-build/backup/<second>/ (a folder with its own
    "copy", or a link). Before: the copy replaced what was there, or the apply failed
    on the link ("leaves the project through a symbolic link") and the image was not
    written."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    taken = root / ".nebula-build/backup" / STAMP
    taken.parent.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    if kind == "folder":
        (taken / "out").mkdir(parents=True)
        (taken / "out/a.png").write_bytes(b"committed")
    elif kind == "link out":
        taken.symlink_to(outside, target_is_directory=True)
    else:
        taken.write_bytes(b"committed")
    said = force_over_a_hand_edit(root, run_cli, b"drawn by hand")
    assert f"1 replaced file backed up in .nebula-build/backup/{STAMP}-2/" in said
    assert backed_up(root)[f"{STAMP}-2/out/a.png"] == b"drawn by hand"
    assert not list(outside.iterdir())
    if kind == "folder":
        assert (taken / "out/a.png").read_bytes() == b"committed"


def test_a_backup_folder_that_became_a_link_after_the_checks_is_not_followed(
    project, run_cli, monkeypatch, tmp_path
):
    """.nebula-build/backup is checked to be a plain folder when a command starts; a
    branch switched under `watch` may make it a link later. Before: the copy went
    wherever the link pointed (outside the project). Now the file is neither copied
    there nor replaced."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    checked = Project.checked

    def then_linked(self: Project) -> Project:
        result = checked(self)
        backup = self.state_dir / "backup"
        if not backup.is_symlink():
            backup.symlink_to(outside, target_is_directory=True)
        return result

    monkeypatch.setattr(Project, "checked", then_linked)
    (root / "out/a.png").write_bytes(b"drawn by hand")
    code, out, err = run_cli("apply", "--force")
    assert code == 1
    assert ".nebula-build/backup: backup is not a plain folder" in out + err, out + err
    assert "Traceback" not in out + err
    assert not list(outside.rglob("*"))
    assert (root / "out/a.png").read_bytes() == b"drawn by hand"


def test_a_large_file_is_copied_without_reading_it_into_memory(project, run_cli, monkeypatch):
    """Before: the whole file was read into memory to be copied (a pull request's
    multi-gigabyte file at an output path could exhaust a CI runner's memory)."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    large = bytes(range(256)) * (48 << 12)  # 48 MiB
    (root / "out/a.png").write_bytes(large)
    peaks = []
    backup = Guard.backup

    def measured(self: Guard, *args: Any) -> None:
        tracemalloc.start()
        try:
            backup(self, *args)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()

    monkeypatch.setattr(Guard, "backup", measured)
    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    (copy,) = (root / ".nebula-build/backup").rglob("a.png")
    assert copy.read_bytes() == large
    assert len(peaks) == 1 and peaks[0] < 8 << 20, f"peak {peaks[0] / 2**20:.0f} MiB"


def test_a_copy_keeps_the_files_permissions(project, run_cli):
    """Before: a file only its owner could read (0600) was copied readable by all (0644)."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    (root / "out/a.png").write_bytes(b"private")
    (root / "out/a.png").chmod(0o600)
    assert run_cli("apply", "--force").code == 0
    (copy,) = (root / ".nebula-build/backup").rglob("a.png")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600


def test_gc_says_what_the_backups_hold_and_leaves_them_without_backups(project, run_cli, tmp_path):
    """Before: gc said nothing of .nebula-build/backup/, which grew with every copy."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    force_over_a_hand_edit(root, run_cli, b"drawn by hand, first")
    force_over_a_hand_edit(root, run_cli, b"drawn by hand, second!")
    folder = root / ".nebula-build/backup"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "20250102T030405").mkdir(parents=True)
    (elsewhere / "20250102T030405/big.bin").write_bytes(b"x" * 5_000_000)
    (folder / "20250102T030406").symlink_to(elsewhere / "20250102T030405")  # not followed
    (folder / "notes").mkdir()  # not a run's folder: not counted
    (folder / "notes/n.txt").write_bytes(b"x" * 5_000_000)
    copies = backed_up(root)
    for args, listed in ((("gc", "--dry-run"), ""), (("gc",), " (--dry-run lists them first)")):
        code, out, err = run_cli(*args)
        assert code == 0, err
        assert (
            "kept 2 backup folders in .nebula-build/backup/ (2 files, 42 bytes): the files "
            f"apply replaced, as they were; `nebula-build gc --backups` removes them{listed}, "
            "once you no longer need them\n"
        ) in out, out
    assert backed_up(root) == copies
    code, out, err = run_cli("gc", "--json")
    assert code == 0, err
    assert json.loads(out)["backups"] == {
        "path": ".nebula-build/backup/",
        "folders": 2,
        "files": 2,
        "bytes": len(b"drawn by hand, first") + len(b"drawn by hand, second!"),
    }


def test_gc_says_nothing_of_backups_where_there_are_none(project, run_cli):
    project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("gc")
    assert code == 0, err
    assert "backup" not in out
