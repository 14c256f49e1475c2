"""A lock entry whose path differs from a declared output only in case names that
output's very file on macOS and Windows: a pull request's lock must not have apply
delete or move it. (Linux tells the names apart: a hard link stands in for the one
file such a disk keeps under both names.)"""

from __future__ import annotations

import os
from pathlib import Path

from nebula_build.state import lockfile
from tests.manifests import PREVIEW

ICON = '[images.icon]\nprompt = "a paper crane"\nwidth = 64\nheight = 64\noutput = "img/icon.png"'
CRANE = ICON.replace("[images.icon]", "[images.crane]").replace("img/icon", "img/crane")


def _with_icon(project, run_cli, *blocks: str) -> Path:
    root = project({"images.toml": PREVIEW + f"\n{ICON}\n"})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(
        PREVIEW + "".join(f"\n{block}\n" for block in (ICON, *blocks)), encoding="utf-8"
    )
    return root


def _plant(root: Path, name: str) -> bytes:
    """A lock entry `name` recording icon's file as `img/ICON.png`, and that name made
    the same file as icon's output; what the file holds."""
    lock = root / "images.lock"
    text = lock.read_text(encoding="utf-8")
    icon = text[text.index("[images.icon]") :]
    planted = icon.replace("[images.icon]", f"[images.{name}]").replace("img/icon", "img/ICON")
    lock.write_text(f"{text}\n{planted}", encoding="utf-8")
    assert name in lockfile.loads(lock.read_text(encoding="utf-8"))
    os.link(root / "img/icon.png", root / "img/ICON.png")
    return (root / "img/icon.png").read_bytes()


def test_an_entry_of_a_removed_image_under_another_case_keeps_the_declared_file(project, run_cli):
    root = _with_icon(project, run_cli)
    held = _plant(root, "ghost")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        "img/ICON.png stays: on macOS and Windows it is img/icon.png, which icon declares"
    ) in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "img/ICON.png").is_file() and (root / "img/icon.png").read_bytes() == held
    assert "ghost" not in lockfile.loads((root / "images.lock").read_text(encoding="utf-8"))


def test_an_entry_moved_from_another_case_of_a_declared_file_does_not_take_it(project, run_cli):
    root = _with_icon(project, run_cli, CRANE)
    held = _plant(root, "crane")
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "move" not in out
    assert "the lock records it at img/ICON.png, which is the output of icon" in out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / "img/icon.png").read_bytes() == held and (root / "img/ICON.png").is_file()
    assert (root / "img/crane.png").is_file()
