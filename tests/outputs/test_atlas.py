"""Sprite atlases: frames match the pixels, rebuilt only when a member changes."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image, ImageChops

from nebula_build.core.atlaspack import pack
from nebula_build.outputs.schemas import FrameMap
from nebula_build.state.lockfile import loads
from tests.conftest import fake_manifest

ENEMY = {
    "prompt": "pixel art {kind} {pose}",
    "output": "sprites/{kind}-{pose}.png",
    "matrix": {"kind": ["slime", "bat"], "pose": ["idle", "attack"]},
    "seed": "{index}",
}
ASSETS = '\n[assets]\nmanifest = "sprites/images.json"\n'
ATLAS = '\n[atlases.enemies]\nimages = ["enemy[*]", "coin"]\noutput = "sprites/enemies.png"\n'


def manifest(log, enemy=ENEMY) -> str:
    images = {
        "enemy": enemy,
        "coin": {"prompt": "a coin", "width": 128, "height": 64, "output": "sprites/coin.png"},
    }
    return fake_manifest(log, images) + ATLAS


def test_atlas_frames_match_the_member_pixels(project, run_cli, fake_site, tmp_path):
    root = project({"images.toml": manifest(tmp_path / "log")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    frames = FrameMap.model_validate_json((root / "sprites/enemies.json").read_text())
    assert frames.meta.image == "enemies.png"
    with Image.open(root / "sprites/enemies.png") as opened:
        sheet = opened.convert("RGBA")
        assert (frames.meta.size.w, frames.meta.size.h) == sheet.size
        assert set(frames.frames) == {
            "enemy[slime,idle]",
            "enemy[slime,attack]",
            "enemy[bat,idle]",
            "enemy[bat,attack]",
            "coin",
        }
        lock = {n: e.output for n, e in loads((root / "images.lock").read_text()).items()}
        for name, frame in frames.frames.items():
            box = (
                frame.frame.x,
                frame.frame.y,
                frame.frame.x + frame.frame.w,
                frame.frame.y + frame.frame.h,
            )
            with Image.open(root / lock[name]) as member:
                assert (
                    ImageChops.difference(sheet.crop(box), member.convert("RGBA")).getbbox() is None
                ), name


def test_atlas_is_rebuilt_only_when_a_member_changes(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": manifest(log)})
    run_cli("apply")
    sheet = root / "sprites/enemies.png"
    first, mtime = sheet.read_bytes(), sheet.stat().st_mtime_ns
    assert run_cli("apply").code == 0 and sheet.stat().st_mtime_ns == mtime
    assert run_cli("plan", "--detailed-exitcode").code == 0
    (root / "images.toml").write_text(manifest(log, {**ENEMY, "prompt": "pixel art {kind}!"}))
    code, out, _ = run_cli("plan")
    assert "atlas enemies  build" in out and "members change" in out
    assert run_cli("apply").code == 0
    assert sheet.read_bytes() != first


def _frame_of(root, name: str) -> Image.Image:
    frames = FrameMap.model_validate_json((root / "sprites/enemies.json").read_text())
    box = frames.frames[name].frame
    with Image.open(root / "sprites/enemies.png") as sheet:
        return sheet.convert("RGBA").crop((box.x, box.y, box.x + box.w, box.y + box.h))


def test_a_members_hand_edit_is_packed_only_once_accepted(project, run_cli, fake_site, tmp_path):
    """With a member in conflict and the atlas due for a rebuild, the build packed the
    edit nobody accepted; once the member was restored the atlas said "up to date" and
    kept the edit's pixels."""
    log = tmp_path / "log"
    root = project({"images.toml": manifest(log)})
    assert run_cli("apply").code == 0
    coin = root / "sprites/coin.png"
    made = coin.read_bytes()
    green = Image.new("RGBA", (128, 64), (0, 255, 0, 255))
    green.save(coin)
    (root / "images.toml").write_text(manifest(log) + "padding = 3\n")
    code, out, _ = run_cli("plan")
    assert "atlas enemies  waiting" in out and "waiting for coin (changed by hand)" in out
    sheet = (root / "sprites/enemies.png").read_bytes()
    code, _, err = run_cli("apply")
    assert code == 1 and "coin: sprites/coin.png: output file changed by hand" in err
    assert (root / "sprites/enemies.png").read_bytes() == sheet
    coin.write_bytes(made)
    code, out, _ = run_cli("plan")
    assert "atlas enemies  build" in out
    assert run_cli("apply").code == 0
    with Image.open(coin) as restored:
        assert (
            ImageChops.difference(_frame_of(root, "coin"), restored.convert("RGBA")).getbbox()
            is None
        )
    green.save(coin)
    code, out, err = run_cli("accept", "coin")
    assert code == 0, err
    # it had said nothing of the atlas, which the next apply builds with the edit
    assert out.splitlines()[-1] == "`nebula-build apply` packs the edit into atlas enemies"
    assert run_cli("apply").code == 0
    assert ImageChops.difference(_frame_of(root, "coin"), green).getbbox() is None


def test_an_interrupted_build_waits_for_a_members_hand_edit(project, run_cli, fake_site, tmp_path):
    """The sheet of an earlier build back in place (a killed build, a checkout of the
    sheet) and a member edited: the plan said "build (a build was interrupted)" and
    apply failed the atlas, saying the member changed since the plan."""
    log = tmp_path / "log"
    root = project({"images.toml": manifest(log)})
    assert run_cli("apply").code == 0
    first = (root / "sprites/enemies.png").read_bytes()
    (root / "images.toml").write_text(manifest(log) + "padding = 5\n")
    assert run_cli("apply").code == 0
    (root / "sprites/enemies.png").write_bytes(first)
    (root / "images.toml").write_text(manifest(log))
    assert "a build was interrupted" in run_cli("plan").out
    Image.new("RGBA", (128, 64), (0, 255, 0, 255)).save(root / "sprites/coin.png")
    code, out, _ = run_cli("plan")
    assert "atlas enemies  waiting" in out and "waiting for coin (changed by hand)" in out, out
    code, out, err = run_cli("apply")
    assert code == 1 and "coin: sprites/coin.png: output file changed by hand" in err
    assert "atlas" not in err and "failed atlas" not in out, out + err
    assert (root / "sprites/enemies.png").read_bytes() == first


def test_a_hand_edited_sheet_is_not_overwritten_without_force(
    project, run_cli, fake_site, tmp_path
):
    root = project({"images.toml": manifest(tmp_path / "log")})
    run_cli("apply")
    (root / "sprites/enemies.png").write_bytes(b"my edit")
    (root / "images.toml").write_text(
        manifest(tmp_path / "log", {**ENEMY, "prompt": "other {kind} {pose}"})
    )
    code, _, err = run_cli("apply")
    assert code == 1 and "atlas enemies: sprites/enemies.png changed by hand" in err
    assert (root / "sprites/enemies.png").read_bytes() == b"my edit"
    assert run_cli("apply", "--force").code == 0
    assert (root / "sprites/enemies.png").read_bytes()[:4] == b"\x89PNG"


def test_atlases_and_the_asset_manifest_are_in_the_plan_the_apply_and_the_status(
    project, run_cli, fake_site, tmp_path
):
    root = project({"images.toml": manifest(tmp_path / "log") + ASSETS})
    code, out, _ = run_cli("plan", "--json")
    files = {f["name"]: f for f in json.loads(out)["files"]}
    assert files["atlas enemies"] == {
        "name": "atlas enemies",
        "kind": "atlas",
        "atlas": "enemies",
        "action": "build",
        "reason": "new atlas",
        "output": "sprites/enemies.png",
        "frames": "sprites/enemies.json",
        "exports": [],
        "backup": False,
    }
    assert files["asset manifest"]["action"] == "build"
    assert files["asset manifest"]["reason"] == "images change"
    code, out, _ = run_cli("plan")
    assert "1 atlas to build, 1 asset manifest to build." in out

    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "built atlas enemies sprites/enemies.png" in err
    assert "built asset manifest sprites/images.json" in err
    done = "5 done (5 generated), 1 atlas built (2 files), asset manifest written, 0 failed."
    assert "Apply finished" in out and done in out
    code, out, _ = run_cli("status")
    assert re.search(r"atlas enemies +up to date +sprites/enemies.png", out)
    assert re.search(r"asset manifest +up to date +sprites/images.json", out)

    (root / "sprites/images.json").unlink()
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 2 and "+ asset manifest  build  sprites/images.json" in out and "missing" in out
    code, out, _ = run_cli("apply", "--json")
    result = json.loads(out)
    assert result["results"] == []
    assert [(f["name"], f["status"]) for f in result["files"]] == [("asset manifest", "ok")]
    assert (root / "sprites/images.json").exists()


def test_force_overwrites_a_hand_edited_sheet_even_when_no_member_changed(
    project, run_cli, fake_site, tmp_path
):
    root = project({"images.toml": manifest(tmp_path / "log")})
    assert run_cli("apply").code == 0
    sheet = root / "sprites/enemies.png"
    sheet.write_bytes(b"my edit")
    code, _, err = run_cli("apply")
    assert code == 1 and "sprites/enemies.png changed by hand" in err
    code, out, err = run_cli("apply", "--force")
    assert code == 0, err
    assert sheet.read_bytes()[:4] == b"\x89PNG"
    backups = list((root / ".nebula-build/backup").rglob("enemies.png"))
    assert [b.read_bytes() for b in backups] == [b"my edit"]


def test_unknown_atlas_member_is_a_clear_error(project, run_cli, fake_site, tmp_path):
    project({"images.toml": manifest(tmp_path / "log").replace('"coin"]', '"coni"]')})
    code, _, err = run_cli("validate")
    assert code == 1 and "atlases.enemies.images: unknown image: coni" in err


@pytest.mark.parametrize("padding", [0, 2, 7])
def test_packing_never_overlaps(padding):
    sizes = {f"s{i}": (16 + (i * 7) % 40, 8 + (i * 13) % 50) for i in range(30)}
    positions, (width, height) = pack(sizes, padding)
    boxes = [(x, y, x + sizes[n][0], y + sizes[n][1]) for n, (x, y) in positions.items()]
    for i, a in enumerate(boxes):
        assert a[2] <= width and a[3] <= height
        for b in boxes[i + 1 :]:
            apart = (
                a[2] + padding <= b[0]
                or b[2] + padding <= a[0]
                or a[3] + padding <= b[1]
                or b[3] + padding <= a[1]
            )
            assert apart


def test_the_sheet_is_named_relative_to_a_frame_map_in_another_folder(
    project, run_cli, fake_site, tmp_path
):
    elsewhere = ATLAS + 'frames = "data/atlases/enemies.json"\n'
    root = project({"images.toml": manifest(tmp_path / "log").replace(ATLAS, elsewhere)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    frames = FrameMap.model_validate_json((root / "data/atlases/enemies.json").read_text())
    assert frames.meta.image == "../../sprites/enemies.png"
    assert (root / "data/atlases" / frames.meta.image).resolve() == root / "sprites/enemies.png"


TILESET = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 64
height = 64

[images.hero]
prompt = "knight running, frame {frame}"
matrix = { frame = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }
output = "sprites/hero-{frame}.png"

[images.tile]
prompt = "{t} tile"
matrix = { t = ["grass", "dirt", "water", "stone"] }
output = "tiles/{t}.png"

[atlases.hero]
images = ["hero[*]"]
output = "sheets/hero.png"

[atlases.tiles]
images = ["tile[*]"]
output = "sheets/tiles.png"
"""


def placed(root, atlas: str) -> list[tuple[str, int, int]]:
    frames = json.loads((root / f"sheets/{atlas}.json").read_text())["frames"]
    return [(name, frame["frame"]["x"], frame["frame"]["y"]) for name, frame in frames.items()]


def test_frames_are_placed_in_the_order_the_atlas_lists_them(project, run_cli):
    """Frame 10 after frame 9, a tileset's tiles as declared: what a grid slicer
    (Godot's hframes, Tiled, Phaser's spritesheet) reads, row by row."""
    root = project({"images.toml": TILESET})
    assert run_cli("apply").code == 0
    hero = placed(root, "hero")
    assert [name for name, _, _ in hero] == [f"hero[{n}]" for n in range(1, 13)]
    assert sorted(hero, key=lambda frame: (frame[2], frame[1])) == hero  # row by row
    assert [name for name, _, _ in placed(root, "tiles")] == [
        "tile[grass]",
        "tile[dirt]",
        "tile[water]",
        "tile[stone]",
    ]


def third_slot(root) -> str:
    return sorted(placed(root, "hero"), key=lambda frame: (frame[2], frame[1]))[2][0]


def test_a_sheet_placed_by_name_is_placed_again_in_order(project, run_cli, monkeypatch):
    """A sheet an earlier version placed by name is built again, saying why."""
    from nebula_build.outputs import atlas

    root = project({"images.toml": TILESET})
    with monkeypatch.context() as earlier:  # as 0.4 placed and keyed frames
        earlier.setattr(atlas, "members_key", atlas._by_name_key)
        earlier.setattr(
            atlas, "pack", lambda sizes, padding: pack(dict(sorted(sizes.items())), padding)
        )
        assert run_cli("apply").code == 0
    assert third_slot(root) == "hero[12]"  # by name, "hero[10]" < "hero[1]"
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert (
        out.count("frames are placed in the order images.toml declares them now, no longer by name")
        == 2
    )
    assert "0 to generate" in out
    assert run_cli("apply").code == 0
    assert third_slot(root) == "hero[3]"
    assert run_cli("plan", "--detailed-exitcode").code == 0
