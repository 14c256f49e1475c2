"""A file an image leaves (its output moved while it is made again) at a path another
image declares stays for that image only where it writes or records it in this apply:
otherwise no lock entry would record the file, and dropping the other declaration
left it behind for good, nothing ever removing it nor `status` naming it."""

from __future__ import annotations

import tomllib

from tests.cli.test_rows_matrix import preview
from tests.conftest import fake_manifest

A = {"prompt": "one", "output": "o/x.png", "seed": 1}
#: a made again at o/y.png, and b new at the path a leaves
MOVED = {"a": {**A, "prompt": "uno", "output": "o/y.png"}, "b": {**A, "prompt": "two"}}


def _files(root):
    return sorted(path.name for path in (root / "o").iterdir())


def _recorded(root):
    lock = tomllib.loads((root / "images.lock").read_text())["images"]
    return sorted(entry["output"] for entry in lock.values())


def test_a_file_left_for_an_image_targeted_out_is_removed(project, run_cli):
    root = project({"images.toml": preview({"a": A})})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(preview(MOVED))

    code, out, err = run_cli("plan", "--target", "a")
    assert "      removes o/x.png, which it no longer writes\n" in out, out + err
    code, out, err = run_cli("apply", "--target", "a")
    assert code == 0, out + err
    assert (_files(root), _recorded(root)) == (["y.png"], ["o/y.png"])
    (root / "images.toml").write_text(preview({"a": MOVED["a"]}))  # b dropped
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert _files(root) == ["y.png"]


def test_a_file_left_for_an_image_in_conflict_is_removed(project, run_cli):
    """b is in conflict over a's file: a removes it, and b makes its own next time."""
    root = project({"images.toml": preview({"a": A})})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(preview(MOVED))

    code, out, err = run_cli("plan")
    assert "      removes o/x.png, which it no longer writes\n" in out, out + err
    assert "  ! b  conflict  o/x.png\n" in out
    run_cli("apply")
    assert (_files(root), _recorded(root)) == (["y.png"], ["o/y.png"])
    assert run_cli("apply").code == 0
    assert (_files(root), _recorded(root)) == (["x.png", "y.png"], ["o/x.png", "o/y.png"])


def test_a_file_left_for_an_image_that_fails_is_removed(project, run_cli, fake_site, tmp_path):
    """b takes a's file with --force and fails: the file a left for it goes, recorded
    by no entry (it stayed, and stayed for good once b was dropped)."""
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"a": A})})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(fake_manifest(log, MOVED, fail=("b",)))

    code, out, err = run_cli("plan", "--force")
    assert "      note: keeps o/x.png for b, which writes it (removed if b fails)\n" in out, (
        out + err
    )
    code, out, err = run_cli("apply", "--force")
    assert code == 1, out + err
    assert (_files(root), _recorded(root)) == (["y.png"], ["o/y.png"])
    (root / "images.toml").write_text(fake_manifest(log, {"a": MOVED["a"]}))  # b dropped
    assert run_cli("plan", "--detailed-exitcode").code == 0
    assert _files(root) == ["y.png"]


def test_a_file_left_for_an_image_that_writes_it_is_its(project, run_cli):
    root = project({"images.toml": preview({"a": A})})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(preview(MOVED))

    code, out, err = run_cli("apply", "--force")
    assert code == 0, out + err
    assert (_files(root), _recorded(root)) == (["x.png", "y.png"], ["o/x.png", "o/y.png"])
    assert run_cli("plan", "--detailed-exitcode").code == 0
