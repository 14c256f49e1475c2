"""A lock entry of an image no longer declared that names another image's file, an
input it reads or its output in another case (one file on macOS and Windows): apply
must not delete or move that file. (Linux tells `A.png` from `a.png`: a hard link
stands in for the one file such a disk keeps under both names.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("made", "read"),
    [
        ({"width": 64, "height": 64}, "ref.png"),
        ({"width": 128, "height": 128, "widths": [64]}, "ref-64.png"),
    ],
    ids=["output", "variant"],
)
def test_a_removed_images_file_that_another_image_now_reads_stays(project, run_cli, made, read):
    """`ref` made ref.png; the manifest then dropped `ref` and took its output (or its
    variant) as an input. The plan said `- ref delete ref.png`, and apply failed on
    every run: "file to delete 'ref.png' is an input image" (a pull request's lock could
    name any input so)."""
    from nebula_build.plugin import FLUX_FILL
    from tests.cli.test_rows_matrix import preview
    from tests.core.test_chains import mask

    ref = {"prompt": "a hat", "output": "ref.png", **made}
    root = project({"images.toml": preview({"ref": ref}), "mask.png": mask()})
    assert run_cli("apply").code == 0
    held = (root / read).read_bytes()
    cap = {"model": FLUX_FILL, "prompt": "a cap", "image": read, "mask": "mask.png"}
    (root / "images.toml").write_text(preview({"cap": {**cap, "output": "cap.png"}}))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert f"removed from the manifest; {read} stays: it is an input of cap" in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert (root / read).read_bytes() == held and (root / "cap.png").is_file()
    assert run_cli("apply").code == 0


def test_a_name_in_another_case_that_is_another_file_here_is_removed(project, run_cli):
    """Where the disk tells `A.png` from `a.png` (Linux), the removed image's file is its
    own: it goes, as before; kept, no entry would record it and nothing remove it."""
    x = '[images.x]\nprompt = "x"\nwidth = 64\nheight = 64\noutput = "img/A.png"'
    y = '[images.y]\nprompt = "y"\nwidth = 64\nheight = 64\noutput = "img/b.png"'
    root = project({"images.toml": PREVIEW + f"\n{x}\n{y}\n"})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW + "\n" + y.replace("img/b", "img/a") + "\n")
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "stays" not in out
    assert sorted(path.name for path in (root / "img").iterdir()) == ["a.png"]
