"""`gc --backups` removes the folders runs copied replaced files into: it lists each
(also under --dry-run, which removes nothing), says the bytes freed, keeps the newer
ones with --older-than, and never follows a link or touches anything outside those
folders, whatever a pull request planted there."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nebula_build.state.project import Project
from tests.cli.test_backups_kept import backed_up, force_over_a_hand_edit
from tests.cli.test_trust_paths import A, manifest

OLD = "20200102T030405"


def with_backups(project, run_cli) -> Path:
    """A project with two run folders: one of an old run, one of today's apply."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    force_over_a_hand_edit(root, run_cli, b"drawn by hand, today")
    old = root / ".nebula-build/backup" / OLD / "out"
    old.mkdir(parents=True)
    (old / "a.png").write_bytes(b"drawn by hand, long ago")
    return root


def today() -> str:
    (name,) = (n for n in backed_up_folders() if n != OLD)
    return name


def backed_up_folders(root: Path | None = None) -> list[str]:
    folder = (root or Path.cwd()) / ".nebula-build/backup"
    return sorted(path.name for path in folder.iterdir())


def test_gc_backups_dry_run_lists_the_folders_and_removes_nothing(project, run_cli):
    root = with_backups(project, run_cli)
    copies = backed_up(root)
    code, out, err = run_cli("gc", "--backups", "--dry-run")
    assert code == 0, err
    size = len(b"drawn by hand, today") + len(b"drawn by hand, long ago")
    assert "would remove 2 backup folders from .nebula-build/backup/ (2 files, 43 bytes):\n" in out
    assert f"  {OLD}/  1 file, 23 bytes\n" in out
    assert f"  {today()}/  1 file, 20 bytes\n" in out
    assert backed_up(root) == copies
    code, out, err = run_cli("gc", "--backups", "--dry-run", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["backups_removed"]["folders"] == 2
    assert data["backups_removed"]["bytes"] == size
    assert backed_up(root) == copies


def test_gc_dry_run_lists_while_watch_holds_the_project_and_gc_itself_waits(project, run_cli):
    """--dry-run removes nothing, so a watch running in another terminal does not stop it."""
    from nebula_build.state.projectlock import ProjectLock

    root = with_backups(project, run_cli)
    copies = backed_up(root)
    with ProjectLock(root / ".nebula-build/lock", command="watch"):
        code, out, err = run_cli("gc", "--backups", "--dry-run")
        assert code == 0, err
        assert "would remove 2 backup folders from .nebula-build/backup/" in out
        code, out, err = run_cli("gc", "--backups")
        assert (code, out) == (1, "") and "watch is running in this project (pid " in err
    assert backed_up(root) == copies


def test_gc_backups_removes_every_run_folder_and_says_what_it_freed(project, run_cli):
    """Before: gc only counted them and said `rm -r .nebula-build/backup/` would remove
    them (with whatever else a checkout put there)."""
    root = with_backups(project, run_cli)
    newest = today()
    (root / ".nebula-build/backup/notes").mkdir()  # not a run's: left alone
    (root / ".nebula-build/backup/notes/n.txt").write_bytes(b"mine")
    code, out, err = run_cli("gc", "--backups", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["backups_removed"] == {
        "folders": 2,
        "files": 2,
        "bytes": len(b"drawn by hand, today") + len(b"drawn by hand, long ago"),
        "entries": [
            {
                "folder": f".nebula-build/backup/{OLD}/",
                "files": 1,
                "bytes": len(b"drawn by hand, long ago"),
                "made": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ",
                    time.gmtime(time.mktime(time.strptime(OLD, "%Y%m%dT%H%M%S"))),
                ),
            },
            {
                "folder": f".nebula-build/backup/{newest}/",
                "files": 1,
                "bytes": len(b"drawn by hand, today"),
                "made": data["backups_removed"]["entries"][1]["made"],
            },
        ],
        "failed": [],
    }
    assert data["backups"] == {
        "path": ".nebula-build/backup/",
        "folders": 0,
        "files": 0,
        "bytes": 0,
    }
    assert backed_up_folders(root) == ["notes"]
    assert (root / ".nebula-build/backup/notes/n.txt").read_bytes() == b"mine"
    code, out, err = run_cli("gc", "--backups")
    assert code == 0, err
    assert "removed 0 backup folders from .nebula-build/backup/ (0 files, 0 bytes)\n" in out


def test_gc_backups_in_text_lists_what_it_removed(project, run_cli):
    root = with_backups(project, run_cli)
    newest = today()
    code, out, err = run_cli("gc", "--backups")
    assert code == 0, err
    assert "removed 2 backup folders from .nebula-build/backup/ (2 files, 43 bytes):\n" in out
    assert f"  {OLD}/  1 file, 23 bytes\n  {newest}/  1 file, 20 bytes\n" in out
    assert not (root / ".nebula-build/backup").exists() or not backed_up_folders(root)


def test_gc_backups_older_than_keeps_the_newer_folders(project, run_cli):
    root = with_backups(project, run_cli)
    newest = today()
    code, out, err = run_cli("gc", "--backups", "--older-than", "30d")
    assert code == 0, err
    assert "removed 1 backup folder from .nebula-build/backup/ (1 file, 23 bytes):\n" in out
    assert f"  {OLD}/  1 file, 23 bytes\n" in out
    assert (
        "kept 1 backup folder in .nebula-build/backup/ (1 file, 20 bytes), of runs 30 days "
        "ago or less\n"
    ) in out
    assert backed_up(root) == {f"{newest}/out/a.png": b"drawn by hand, today"}


def test_gc_backups_dry_run_says_what_it_would_keep(project, run_cli):
    """Before: "kept 1 backup folder", of a run that kept, and removed, nothing. In
    --json, `backups_removed` is what it would remove and `backups` what it would leave,
    as a real run's are what it removed and what it left."""
    root = with_backups(project, run_cli)
    newest, copies = today(), backed_up(root)
    code, out, err = run_cli("gc", "--backups", "--older-than", "30d", "--dry-run")
    assert code == 0, err
    assert "would remove 1 backup folder from .nebula-build/backup/ (1 file, 23 bytes):\n" in out
    assert (
        "would keep 1 backup folder in .nebula-build/backup/ (1 file, 20 bytes), of runs 30 "
        "days ago or less\n"
    ) in out
    code, out, err = run_cli("gc", "--backups", "--older-than", "30d", "--dry-run", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["dry_run"] is True
    assert [e["folder"] for e in data["backups_removed"]["entries"]] == [
        f".nebula-build/backup/{OLD}/"
    ]
    assert data["backups"]["folders"] == 1
    assert backed_up(root) == copies
    code, out, err = run_cli("gc", "--backups", "--older-than", "30d", "--json")
    assert code == 0, err
    assert json.loads(out)["backups"] == data["backups"]
    assert backed_up_folders(root) == [newest]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--older-than", "30d"), "--older-than says which backup folders --backups removes"),
        (("--backups", "--older-than", "30"), "'30' is no age: give days or hours"),
        (("--backups", "--older-than", "3 d"), "'3 d' is no age"),
    ],
)
def test_gc_older_than_wants_backups_and_an_age(project, run_cli, capsys, args, said):
    root = with_backups(project, run_cli)
    copies = backed_up(root)
    code, out, err = run_cli("gc", *args)
    printed = capsys.readouterr()  # argparse writes its own errors
    assert code == 1
    assert said in err + printed.err, err
    assert "Traceback" not in out + err + printed.err
    assert backed_up(root) == copies


def test_gc_backups_never_follows_a_link_planted_in_the_backup_folder(project, run_cli, tmp_path):
    """A pull request may commit links under .nebula-build/backup/: one named as a run's
    folder, and links inside a run's folder to a folder and a file outside the project.
    gc removes the links in a run's folder, never what they point at, and leaves the
    link that is no run's folder."""
    root = with_backups(project, run_cli)
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner/keep.txt").write_bytes(b"not the project's")
    (outside / "file.txt").write_bytes(b"not the project's either")
    backup = root / ".nebula-build/backup"
    (backup / "20200102T030406").symlink_to(outside, target_is_directory=True)
    (backup / OLD / "out/folder").symlink_to(outside / "inner", target_is_directory=True)
    (backup / OLD / "out/file.png").symlink_to(outside / "file.txt")
    code, out, err = run_cli("gc", "--backups")
    assert code == 0, err
    assert "removed 2 backup folders from .nebula-build/backup/ (2 files, 43 bytes):\n" in out
    assert (outside / "inner/keep.txt").read_bytes() == b"not the project's"
    assert (outside / "file.txt").read_bytes() == b"not the project's either"
    assert backed_up_folders(root) == ["20200102T030406"]
    assert (backup / "20200102T030406").is_symlink()


def test_gc_backups_refuses_a_backup_folder_that_is_a_link(project, run_cli, tmp_path):
    """.nebula-build/backup itself a link out of the project: one line, nothing removed."""
    root = project({"images.toml": manifest(A)})
    assert run_cli("apply").code == 0
    outside = tmp_path / "outside"
    (outside / OLD).mkdir(parents=True)
    (outside / OLD / "precious.txt").write_bytes(b"someone's")
    (root / ".nebula-build/backup").symlink_to(outside, target_is_directory=True)
    code, out, err = run_cli("gc", "--backups")
    assert code == 1
    assert "error: .nebula-build/backup is a symbolic link" in err, err
    assert "Traceback" not in out + err
    assert (outside / OLD / "precious.txt").read_bytes() == b"someone's"


def test_gc_backups_refuses_a_backup_folder_that_became_a_link_after_the_checks(
    project, run_cli, monkeypatch, tmp_path
):
    """The project's checks run when a command starts; a branch switched meanwhile may
    make .nebula-build/backup a link: the removal walks from the project root and
    refuses it, and gc removes nothing."""
    root = with_backups(project, run_cli)
    backup = root / ".nebula-build/backup"
    backup.rename(tmp_path / "moved")
    outside = tmp_path / "moved"
    checked = Project.checked

    def then_linked(self: Project) -> Project:
        result = checked(self)
        if not backup.is_symlink():
            backup.symlink_to(outside, target_is_directory=True)
        return result

    monkeypatch.setattr(Project, "checked", then_linked)
    before = sorted(p.relative_to(outside) for p in outside.rglob("*"))
    code, out, err = run_cli("gc", "--backups")
    assert code == 1
    assert "error: .nebula-build/backup: backup is not a plain folder" in err, err
    assert "Traceback" not in out + err
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == before
