"""`Guard.backup_copies`: the copies `history` looks through for an accepted edit, read
only inside the backup folder, whatever path a lock names."""

from __future__ import annotations

from pathlib import Path

import pytest

from nebula_build.state.guard import Guard


@pytest.mark.parametrize("relative", ["../x.png", "/etc/passwd", "img/../../x.png", ""])
def test_a_path_out_of_the_backup_folder_reads_nothing(tmp_path: Path, relative: str) -> None:
    backups = tmp_path / ".nebula-build/backup"
    (backups / "20260101T000000Z/img").mkdir(parents=True)
    (tmp_path / ".nebula-build/x.png").write_bytes(b"not a copy")
    (tmp_path / "x.png").write_bytes(b"not a copy either")
    copies = Guard(tmp_path).backup_copies(backups, relative, limit=1 << 20, newest=5)
    assert list(copies) == []


def test_copies_come_newest_first_and_a_linked_folder_is_skipped(tmp_path: Path) -> None:
    backups = tmp_path / ".nebula-build/backup"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "h.png").write_bytes(b"outside")
    for name, data in (("20260101T000000Z", b"old"), ("20260102T000000Z", b"new")):
        (backups / name / "img").mkdir(parents=True)
        (backups / name / "img/h.png").write_bytes(data)
    (backups / "20260103T000000Z").mkdir()
    (backups / "20260103T000000Z/img").symlink_to(outside)
    guard = Guard(tmp_path)
    copies = list(guard.backup_copies(backups, "img/h.png", limit=1 << 20, newest=5))
    assert copies == [("20260102T000000Z", b"new"), ("20260101T000000Z", b"old")]
    assert list(guard.backup_copies(backups, "img/h.png", limit=2, newest=5)) == []
    assert list(guard.backup_copies(backups, "img/h.png", limit=9, newest=1)) == []
