"""Engine exports of an atlas, read the way the engines read them: Phaser's JSON array
parser and `anims.createFromAseprite`, and Godot 4's text resource grammar."""

from __future__ import annotations

import json
import re
import struct
import tracemalloc
import zlib
from hashlib import sha256

import pytest
from PIL import Image, ImageChops

PREVIEW = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128

[images.enemy]
prompt = "a {kind} monster, {pose} pose"
matrix = { kind = ["bat", "ghost"], pose = ["idle", "attack"] }
seed = "{index} + 100"
background = "transparent"
trim = true
output = "sprites/{kind}-{pose}.png"

[atlases.enemies]
images = ["enemy[*]"]
output = "game/sprites/enemies.png"
tags = "pose"
fps = 10
aseprite = "game/sprites/enemies.aseprite.json"
godot = "game/sprites/enemies.tres"
godot_root = "game"
"""


def phaser_animations(data: dict) -> dict[str, list[str]]:
    """What Phaser makes of the file: the texture frames its JSON array parser adds (by
    `filename`), then createFromAseprite's animations, each frame looked up by the
    string of its index, as Phaser does."""
    texture = {src["filename"]: src["frame"] for src in data["frames"]}
    animations = {}
    for tag in data["meta"]["frameTags"]:
        keys = []
        for i in range(tag["from"], tag["to"] + 1):
            key = str(i)
            assert key in texture, f"frame {key} of tag {tag['name']} is not a texture frame"
            assert data["frames"][i]["duration"] == 100
            keys.append(key)
        animations[tag["name"]] = keys
    return animations


def test_aseprite_export_loads_as_phaser_reads_it_and_frames_hold_the_trimmed_sprites(
    project, run_cli
):
    root = project({"images.toml": PREVIEW})
    code, _, err = run_cli("apply")
    assert code == 0, err
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    assert data["meta"]["image"] == "enemies.png"
    assert phaser_animations(data) == {"idle": ["0", "1"], "attack": ["2", "3"]}
    names = data["meta"]["nebula_build"]["names"]
    assert names == [f"enemy[{k},{p}]" for p in ("idle", "attack") for k in ("bat", "ghost")]
    with Image.open(root / "game/sprites/enemies.png") as opened:
        sheet = opened.convert("RGBA")
    assert sheet.getchannel("A").getextrema()[0] == 0  # the sheet carries alpha
    for index, name in enumerate(names):
        entry = data["frames"][index]
        kind, pose = name[6:-1].split(",")
        with Image.open(root / f"sprites/{kind}-{pose}.png") as member:
            x, y, w, h = (entry["frame"][k] for k in "xywh")
            assert (w, h) == member.size and w < 128  # trimmed
            crop = sheet.crop((x, y, x + w, y + h))
            assert ImageChops.difference(crop, member.convert("RGBA")).getbbox() is None
            left, top, full_w, full_h = map(int, member.info["nebula-build:trim"].split(","))
        assert entry["trimmed"] is True
        assert entry["sourceSize"] == {"w": full_w, "h": full_h} == {"w": 128, "h": 128}
        assert entry["spriteSourceSize"] == {"x": left, "y": top, "w": w, "h": h}
    frames = json.loads((root / "game/sprites/enemies.json").read_text())["frames"]
    assert frames["enemy[bat,idle]"]["spriteSourceSize"] == data["frames"][0]["spriteSourceSize"]


SECTION = re.compile(r"^\[(\w+)((?: \w+=(?:\"[^\"]*\"|\d+))*)\]$")
ATTRIBUTE = re.compile(r' (\w+)=("[^"]*"|\d+)')


def parse_tres(text: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """Godot 4's text resource format: a `[gd_resource …]` header, then `[ext_resource]`,
    `[sub_resource]` and one `[resource]` section, each `key = value` lines; a value may
    span lines until its brackets close. Anything else fails the test."""
    sections: list[tuple[str, dict[str, str], dict[str, str]]] = []
    pending: list[str] = []
    for line in text.splitlines():
        if pending:
            pending.append(line)
        elif not line:
            continue
        elif match := SECTION.match(line):
            attrs = {k: v.strip('"') for k, v in ATTRIBUTE.findall(match.group(2))}
            sections.append((match.group(1), attrs, {}))
            continue
        else:
            assert " = " in line, f"not a property: {line!r}"
            pending = [line]
        value = "\n".join(pending)
        if value.count("[") + value.count("{") == value.count("]") + value.count("}"):
            key, _, rest = value.partition(" = ")
            sections[-1][2][key] = rest
            pending = []
    assert not pending, "a value never closed"
    return sections


def test_godot_sprite_frames_follow_the_resource_grammar(project, run_cli):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    sections = parse_tres((root / "game/sprites/enemies.tres").read_text())
    (kind, header, _), *body = sections
    assert (kind, header["type"], header["format"]) == ("gd_resource", "SpriteFrames", "3")
    assert int(header["load_steps"]) == len(body)  # every resource, plus the [resource]
    ext = [attrs for kind, attrs, _ in body if kind == "ext_resource"]
    assert ext == [{"type": "Texture2D", "path": "res://sprites/enemies.png", "id": "1_sheet"}]
    subs = {attrs["id"]: props for kind, attrs, props in body if kind == "sub_resource"}
    frames = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())["frames"]
    for index, entry in enumerate(frames):
        props = subs[f"AtlasTexture_{index}"]
        assert props["atlas"] == 'ExtResource("1_sheet")'
        assert props["region"] == "Rect2({x}, {y}, {w}, {h})".format(**entry["frame"])
        x, y = entry["spriteSourceSize"]["x"], entry["spriteSourceSize"]["y"]
        w = entry["sourceSize"]["w"] - entry["frame"]["w"]
        h = entry["sourceSize"]["h"] - entry["frame"]["h"]
        assert props["margin"] == f"Rect2({x}, {y}, {w}, {h})"
    (resource,) = [props for kind, _, props in body if kind == "resource"]
    animations = resource["animations"]
    assert re.findall(r'"name": &"(\w+)"', animations) == ["idle", "attack"]
    assert animations.count('"speed": 10.0') == 2
    used = re.findall(r'SubResource\("(\w+)"\)', animations)
    assert used == ["AtlasTexture_0", "AtlasTexture_1", "AtlasTexture_2", "AtlasTexture_3"]


def test_tags_of_two_dimensions_make_one_animation_per_character_and_pose(project, run_cli):
    """`tags = "pose"` over several characters makes an "idle" that plays bat then
    ghost; `tags = ["kind", "pose"]` one animation each, and `loop` says which play
    once (an attack), in both exports."""
    manifest = PREVIEW.replace(
        'tags = "pose"', 'tags = ["kind", "pose"]\nloop = ["bat_idle", "ghost_idle"]'
    )
    root = project({"images.toml": manifest})
    code, _, err = run_cli("apply")
    assert code == 0, err
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    assert phaser_animations(data) == {
        "bat_idle": ["0"],
        "bat_attack": ["1"],
        "ghost_idle": ["2"],
        "ghost_attack": ["3"],
    }
    once = {tag["name"]: tag.get("repeat") for tag in data["meta"]["frameTags"]}
    assert once == {"bat_idle": None, "bat_attack": "1", "ghost_idle": None, "ghost_attack": "1"}
    (resource,) = [
        p
        for k, _, p in parse_tres((root / "game/sprites/enemies.tres").read_text())
        if k == "resource"
    ]
    loops = re.findall(r'"loop": (\w+),\n"name": &"(\w+)"', resource["animations"])
    assert loops == [
        ("true", "bat_idle"),
        ("false", "bat_attack"),
        ("true", "ghost_idle"),
        ("false", "ghost_attack"),
    ]
    root.joinpath("images.toml").write_text(manifest.replace('"ghost_idle"]', '"ghost_walk"]'))
    code, _, err = run_cli("validate")
    assert code == 1 and err.endswith(
        "atlases.enemies.loop: no animation is named 'ghost_walk' (the atlas's are bat_idle, "
        "bat_attack, ghost_idle, ghost_attack)\n"
    ), err
    root.joinpath("images.toml").write_text(manifest.replace('"kind", "pose"', '"kind", "mood"'))
    code, _, err = run_cli("validate")
    assert code == 1 and len(err.splitlines()) == 1 and "no matrix dimension 'mood'" in err


def test_a_members_error_is_said_once_not_as_the_atlas_loops(project, run_cli):
    """With its members' width wrong, validate also said "atlases.enemies.loop: no
    animation is named 'bat_idle' (the atlas's are default)": a second, false error."""
    manifest = PREVIEW.replace('tags = "pose"', 'tags = ["kind", "pose"]\nloop = ["bat_idle"]')
    project({"images.toml": manifest.replace("width = 128", "width = 500")})
    code, _, err = run_cli("validate")
    assert code == 1 and "width: must be a multiple of 8" in err, err
    assert "atlases" not in err and len(err.splitlines()) == 1, err


def test_two_combinations_that_make_one_tag_are_refused(project, run_cli):
    manifest = PREVIEW.replace(
        'matrix = { kind = ["bat", "ghost"], pose = ["idle", "attack"] }',
        'matrix = { kind = ["a_b", "a"], pose = ["c", "b_c"] }',
    ).replace('tags = "pose"', 'tags = ["kind", "pose"]')
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1 and err.strip().endswith(
        "atlases.enemies.tags: 'a_b + c' and 'a + b_c' both make the tag 'a_b_c': rename a "
        "value so that no tag has two"
    ), err


def test_loop_false_plays_every_animation_once_and_needs_an_export(project, run_cli):
    root = project({"images.toml": PREVIEW.replace('tags = "pose"', 'tags = "pose"\nloop = false')})
    assert run_cli("apply").code == 0
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    assert [tag.get("repeat") for tag in data["meta"]["frameTags"]] == ["1", "1"]
    plain = PREVIEW.replace('tags = "pose"', "loop = false").split("aseprite =")[0]
    root.joinpath("images.toml").write_text(plain)
    code, _, err = run_cli("validate")
    assert code == 1 and "atlases.enemies.loop: applies only with `aseprite` or `godot`" in err


def test_exports_are_rebuilt_from_the_cache_and_a_hand_edit_is_a_conflict(project, run_cli):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace('tags = "pose"', 'tags = "kind"'))
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    assert json.loads(out)["generated"] == 0
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    assert [tag["name"] for tag in data["meta"]["frameTags"]] == ["bat", "ghost"]

    tres = root / "game/sprites/enemies.tres"
    tres.write_text(tres.read_text() + "; edited\n")
    code, out, _ = run_cli("plan")
    assert "game/sprites/enemies.tres was not written by nebula-build" in out
    (atlas,) = json.loads(run_cli("plan", "--json").out)["files"]
    assert atlas["exports"] == ["game/sprites/enemies.aseprite.json", "game/sprites/enemies.tres"]
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    code, _, err = run_cli("apply")
    assert code == 1 and "enemies.tres" in err
    assert tres.read_text().endswith("; edited\n")
    tres.unlink()
    assert run_cli("apply").code == 0
    assert '"speed": 12.0' in tres.read_text()


def test_tags_name_a_dimension_every_member_has(project, run_cli):
    project({"images.toml": PREVIEW.replace('tags = "pose"', 'tags = "colour"')})
    code, _, err = run_cli("validate")
    assert code == 1
    assert (
        "atlases.enemies.tags: enemy[bat,idle] has no matrix dimension 'colour' to tag its "
        "frame by (its dimensions: kind, pose)\n"
    ) in err
    project({"images.toml": PREVIEW.replace('tags = "pose"', 'tags = "poses"')})
    assert "(its dimensions: kind, pose; did you mean 'pose'?)" in run_cli("validate").err


def test_a_tags_typo_lists_a_few_dimensions_of_a_member_with_many(project, run_cli):
    """A matrix may have thousands of one-value dimensions: listing each (and comparing
    the typo with each) in every atlas's error made a 440 KB manifest print 40 MB."""
    many = ", ".join(f'd{n:03} = ["v"]' for n in range(300))
    manifest = PREVIEW.replace(
        'matrix = { kind = ["bat", "ghost"], pose = ["idle", "attack"] }',
        f'matrix = {{ kind = ["bat", "ghost"], pose = ["idle", "attack"], {many} }}',
    ).replace('tags = "pose"', 'tags = "d0001"')
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1
    line = next(line for line in err.splitlines() if "atlases.enemies.tags" in line)
    assert line.endswith(
        "(its dimensions: kind, pose, d000, d001, d002, d003, d004, d005, d006, d007, "
        "d008, d009, d010, d011, d012, d013, d014, d015, d016, d017, … (282 more))"
    ), line


def test_a_trimmed_and_padded_member_is_placed_back_where_the_untrimmed_one_is(project, run_cli):
    """The frame's spriteSourceSize and sourceSize (and Godot's margin) put the delivered
    file where it sits in the image the same steps make without `trim`."""
    padded = PREVIEW.replace("trim = true\n", "trim = true\npad = 5\n")
    root = project({"images.toml": padded})
    assert run_cli("apply").code == 0
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    names = data["meta"]["nebula_build"]["names"]
    members = {}
    for name in names:
        kind, pose = name[6:-1].split(",")
        with Image.open(root / f"sprites/{kind}-{pose}.png") as opened:
            members[name] = opened.convert("RGBA")
    subs = {
        attrs["id"]: props
        for kind, attrs, props in parse_tres((root / "game/sprites/enemies.tres").read_text())
        if kind == "sub_resource"
    }
    (root / "images.toml").write_text(padded.replace("trim = true\n", ""))
    code, _, err = run_cli("apply")
    assert code == 0, err
    for index, name in enumerate(names):
        entry = data["frames"][index]
        kind, pose = name[6:-1].split(",")
        with Image.open(root / f"sprites/{kind}-{pose}.png") as opened:
            untrimmed = opened.convert("RGBA")
        assert entry["trimmed"] is True
        assert entry["sourceSize"] == {"w": untrimmed.width, "h": untrimmed.height}
        placed = Image.new("RGBA", untrimmed.size, (0, 0, 0, 0))
        x, y = entry["spriteSourceSize"]["x"], entry["spriteSourceSize"]["y"]
        placed.paste(members[name], (x, y))
        assert ImageChops.difference(placed, untrimmed).getbbox() is None
        w, h = untrimmed.width - members[name].width, untrimmed.height - members[name].height
        assert subs[f"AtlasTexture_{index}"]["margin"] == f"Rect2({x}, {y}, {w}, {h})"


def test_a_trimmed_member_with_a_large_pad_and_extrude_stays_trimmed(project, run_cli):
    root = project(
        {"images.toml": PREVIEW.replace("trim = true\n", "trim = true\npad = 200\nextrude = 64\n")}
    )
    assert run_cli("apply").code == 0
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    for entry in data["frames"]:
        assert entry["trimmed"] is True
        assert entry["sourceSize"] == {"w": 128 + 528, "h": 128 + 528}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'aseprite = "game/sprites/enemies.json"',
            "atlases.enemies.aseprite: frames and aseprite are the same file "
            "game/sprites/enemies.json: give each its own",
        ),
        (
            'aseprite = "game/sprites/enemies.tres"',
            "atlases.enemies.godot: aseprite and godot are the same file "
            "game/sprites/enemies.tres: give each its own",
        ),
        (
            'aseprite = "game/sprites/enemies.png"',
            "atlases.enemies.aseprite: output and aseprite are the same file",
        ),
        (
            'aseprite = "game/sprites/enemies.aseprite.json"\n'
            'godot_root = "game/sprites/enemies.png"',
            "atlases.enemies.godot_root: game/sprites/enemies.png is the sheet itself",
        ),
    ],
)
def test_an_atlas_whose_own_files_collide_is_a_manifest_error(project, run_cli, line, message):
    manifest = PREVIEW.replace('aseprite = "game/sprites/enemies.aseprite.json"', line)
    manifest = manifest.replace(
        'godot_root = "game"\n', "" if "godot_root" in line else 'godot_root = "game"\n'
    )
    project({"images.toml": manifest})
    for command in ("validate", "plan"):
        code, _, err = run_cli(command)
        assert code == 1 and message in err, err


def test_a_sheet_over_the_side_cap_is_refused_before_its_members_are_made(
    project, run_cli, monkeypatch
):
    """Untrimmed members' files have known sizes: the sheet is packed from them by
    validate and plan, and apply refuses the manifest before paying for a member (1,000
    members were generated, then the atlas failed)."""
    monkeypatch.setattr("nebula_build.core.atlaspack.MAX_SHEET_SIDE", 200)
    root = project({"images.toml": PREVIEW.replace("trim = true\n", "")})  # 4 × 128² members
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err)
        assert err == (
            "error: images.toml:16:1: atlases.enemies: the sheet would be 258×258 pixels, over "
            "the 200 a side a GPU texture takes; split the atlas or make its members smaller "
            "(resize, pad, extrude)\n"
        ), command
    assert not (root / "sprites").exists()  # nothing was generated


def test_a_trimmed_sheet_over_the_side_cap_fails_the_atlas_in_one_line(
    project, run_cli, monkeypatch
):
    """Trimmed members' sizes follow their pixels: apply finds out, once they are made."""
    monkeypatch.setattr("nebula_build.core.atlaspack.MAX_SHEET_SIDE", 20)
    root = project({"images.toml": PREVIEW})
    assert run_cli("validate").code == 0
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert "  atlas enemies: could not build game/sprites/enemies.png: the sheet would be " in err
    assert " over the 20 a side" in err
    assert not (root / "game/sprites/enemies.png").exists()
    assert (root / "sprites/bat-idle.png").exists()  # the members are built all the same


def test_an_atlas_that_failed_is_said_failed_until_it_is_built(project, run_cli, monkeypatch):
    """`status` said "pending build: new atlas", its --detailed-exitcode 2 and `--json`
    "failed": {}, and the gallery "pending", where an image's failure is said as one."""
    from tests.live.pagedata import card

    root = project({"images.toml": PREVIEW})
    with monkeypatch.context() as capped:
        capped.setattr("nebula_build.core.atlaspack.MAX_SHEET_SIDE", 20)
        code, out, _ = run_cli("apply")
        assert code == 1 and ": 4 done (4 generated), 1 atlas failed.\n" in out, out
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 1
    assert "pending build: new atlas (last apply failed: could not build game/sprites/" in out
    assert out.endswith("4 images up to date, 1 atlas pending; 1 atlas failed in the last apply.\n")
    failed = json.loads(run_cli("status", "--json").out)["failed"]
    assert list(failed) == ["atlas enemies"] and "the sheet would be" in failed["atlas enemies"]
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    assert card(page, "atlas enemies")["status"] == "failed"
    # declared otherwise, it is only pending; built, it failed no more
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    _, out, _ = run_cli("status")
    assert "last apply failed" not in out and "failed in the last apply" not in out
    (root / "images.toml").write_text(PREVIEW)
    assert "last apply failed" in run_cli("status").out
    assert run_cli("apply").code == 0
    assert run_cli("status", "--detailed-exitcode").code == 0
    assert "atlas" not in (root / ".nebula-build/failures.json").read_text()


def test_an_atlas_that_failed_then_left_the_manifest_has_not_failed_when_back(project, run_cli):
    """Its failure stayed recorded: declared again, it was said failed (exit 1) before
    any build of it."""
    root = project({"images.toml": PREVIEW})
    (root / "game/sprites/enemies.png").mkdir(parents=True)
    assert run_cli("apply").code == 1
    without = PREVIEW.partition("[atlases.enemies]")[0]
    (root / "images.toml").write_text(without)
    assert run_cli("apply").code == 0
    (root / "game/sprites/enemies.png").rmdir()
    (root / "images.toml").write_text(PREVIEW)
    code, out, _ = run_cli("status", "--detailed-exitcode")
    assert code == 2 and "failed" not in out, out


def test_a_sheet_over_the_side_cap_is_refused_before_any_member_is_decoded(
    project, run_cli, monkeypatch
):
    """1,000 members of 641×641 (1×1 with pad and extrude) took 1.7 GB of decoded
    pixels before the one line saying the sheet would be too large."""
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    monkeypatch.setattr("nebula_build.core.atlaspack.MAX_SHEET_SIDE", 20)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a member was decoded")

    monkeypatch.setattr("PIL.Image.Image.convert", no_decoding)
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err and "decoded" not in err, err
    assert "atlas enemies: could not build game/sprites/enemies.png: the sheet would be " in err
    assert " over the 20 a side" in err


def test_a_forged_trim_chunk_with_a_non_ascii_digit_is_ignored():
    from nebula_build.outputs.atlas import trim_box

    assert trim_box("0,0,²,64", (10, 10)) is None
    assert trim_box("0,0,٣٢,64", (10, 10)) is None  # Arabic-Indic digits
    assert trim_box("1,2,32,64", (10, 10)) == ((1, 2), (32, 64))


def test_a_folder_at_an_export_path_is_named_even_under_force(project, run_cli):
    root = project({"images.toml": PREVIEW})
    (root / "game/sprites/enemies.aseprite.json").mkdir(parents=True)
    for args in (("apply",), ("apply", "--force")):
        code, _, err = run_cli(*args)
        assert code == 1 and "Errno" not in err and "nebula-tmp" not in err
        assert "game/sprites/enemies.aseprite.json is a folder: remove it" in err


def test_an_export_dropped_from_the_manifest_goes_with_the_rebuild(project, run_cli):
    """Before, the old file stayed and plan said "a member changed"."""
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    tres = root / "game/sprites/enemies.tres"
    assert tres.is_file()

    (root / "images.toml").write_text(PREVIEW.replace('godot = "game/sprites/enemies.tres"\n', ""))
    code, out, _ = run_cli("plan")
    assert code == 0
    reason = "export removed from the manifest\n      removes game/sprites/enemies.tres, which"
    assert reason in out, out
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert not tres.exists() and (root / "game/sprites/enemies.aseprite.json").is_file()
    assert run_cli("plan").out.startswith("No changes")

    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    assert "its options changed" not in run_cli("plan").out  # the godot export is back first
    assert "new export game/sprites/enemies.tres" in run_cli("plan").out
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 8"))
    assert "its options changed" in run_cli("plan").out


NO_GODOT = PREVIEW.replace('godot = "game/sprites/enemies.tres"\n', "")


def test_a_new_export_beside_a_member_that_changes_is_named_in_the_plan(project, run_cli):
    root = project({"images.toml": NO_GODOT})
    assert run_cli("apply").code == 0
    edited = PREVIEW.replace('"a {kind} monster', '"a small {kind} monster')
    (root / "images.toml").write_text(edited)
    code, out, err = run_cli("plan")
    assert code == 0, err
    reason = (
        "members change: enemy[bat,idle], enemy[bat,attack], enemy[ghost,idle] and 1 more; "
        "new export game/sprites/enemies.tres\n"
    )
    assert reason in out, out
    assert run_cli("apply").code == 0 and (root / "game/sprites/enemies.tres").is_file()


NO_EXPORTS = NO_GODOT.replace('aseprite = "game/sprites/enemies.aseprite.json"\n', "")
DROPPED = ["game/sprites/enemies.aseprite.json", "game/sprites/enemies.tres"]
REMOVES_LINE = f"removes {', '.join(DROPPED)}, which it no longer writes"


def project_files(root) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".nebula-build" not in p.parts
    }


def planned_atlas(run_cli, monkeypatch, tmp_path) -> tuple[str, str, dict]:
    """The plan's text, the job summary it writes, and the atlas's action in --json."""
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = run_cli("plan")
    assert code == 0, err
    data = json.loads(run_cli("plan", "--json").out)
    monkeypatch.delenv("GITHUB_ACTIONS")
    return out, summary.read_text(), data["files"][0]


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (  # the members' prompt edited too: the atlas is rebuilt for them
            NO_EXPORTS.replace("a {kind} monster", "a {kind} creature"),
            "members change: enemy[bat,idle], enemy[bat,attack], enemy[ghost,idle] and 1 more"
            "; 2 exports removed from the manifest",
        ),
        (
            NO_EXPORTS,
            "2 exports removed from the manifest",
        ),
    ],
    ids=["members-change", "exports-only"],
)
def test_every_export_a_rebuild_removes_is_named_by_the_plan_json_and_summary(
    project, run_cli, monkeypatch, tmp_path, manifest, reason
):
    """Before, the plan named one dropped export at most, and only when the exports were
    the reason for the build; apply removed both all the same."""
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    before = project_files(root)
    (root / "images.toml").write_text(manifest)

    out, summary, atlas = planned_atlas(run_cli, monkeypatch, tmp_path)
    assert f"      {reason}\n" in out, out
    assert f"\n      {REMOVES_LINE}\n" in out, out
    assert atlas["removes"] == DROPPED
    assert f"; {REMOVES_LINE} |" in summary, summary
    assert f"pending build: {reason}; {REMOVES_LINE}" in run_cli("status").out
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert project_files(root) == before - set(DROPPED)


def test_an_atlas_conflict_names_the_exports_force_would_remove(
    project, run_cli, monkeypatch, tmp_path
):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    before = project_files(root)
    (root / "images.toml").write_text(NO_EXPORTS)
    sheet = root / "game/sprites/enemies.png"
    sheet.write_bytes(sheet.read_bytes() + b"edit")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, _ = run_cli("plan")
    monkeypatch.delenv("GITHUB_ACTIONS")
    assert f"\n      with --force, {REMOVES_LINE}\n" in out, out
    assert f"; with --force, {REMOVES_LINE} |" in summary.read_text()
    atlas = json.loads(run_cli("plan", "--json").out)["files"][0]
    assert atlas["with_force"]["removes"] == DROPPED and "removes" not in atlas
    assert run_cli("apply").code == 1
    assert project_files(root) == before  # nothing removed without --force
    assert run_cli("apply", "--force").code == 0
    assert project_files(root) == before - set(DROPPED)


def test_a_dropped_export_changed_by_hand_stays_and_is_never_overwritten(project, run_cli):
    """Kept when dropped, with plan saying so; adding the export back is then a conflict
    (before: "a build was interrupted", and the edit was overwritten without a backup)."""
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    tres = root / "game/sprites/enemies.tres"
    tres.write_text(tres.read_text() + "; my note\n")
    (root / "images.toml").write_text(NO_GODOT)
    out = run_cli("plan").out
    assert "export game/sprites/enemies.tres removed from the manifest; its file stays" in out
    assert run_cli("apply").code == 0
    assert tres.read_text().endswith("; my note\n")

    (root / "images.toml").write_text(PREVIEW)
    code, out, err = run_cli("apply")
    assert code == 1 and "changed by hand" in err
    assert tres.read_text().endswith("; my note\n")
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    backups = list((root / ".nebula-build/backup").rglob("enemies.tres"))
    assert len(backups) == 1 and backups[0].read_text().endswith("; my note\n")


def test_an_export_dropped_and_added_back_untouched_is_named_as_new(project, run_cli):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(NO_GODOT)
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW)
    assert "new export game/sprites/enemies.tres" in run_cli("plan").out
    assert run_cli("apply").code == 0
    assert (root / "game/sprites/enemies.tres").is_file()


def test_a_frame_map_from_elsewhere_deletes_nothing_and_says_nothing_raw(project, run_cli):
    """A pull request's frame map names project files (with their true digests), and the
    cache's record of the build is crafted to agree, as a committed `.nebula-build/`
    could: nothing is deleted (the record is not this account's), and a path with a
    terminal escape and a workflow command is not printed raw."""
    import hashlib

    root = project({"images.toml": PREVIEW, "docs/notes.json": "{}", "docs/notes.txt": "mine"})
    assert run_cli("apply").code == 0
    frames = root / "game/sprites/enemies.json"
    data = json.loads(frames.read_text())
    record = data["meta"]["nebula_build"]
    record["export:x\x1b[2J\n::error file=images.toml::INJECTED\n"] = "ab" * 32
    victims = [root / "docs/notes.json", root / "docs/notes.txt"]
    for victim in victims:
        digest = hashlib.sha256(victim.read_bytes()).hexdigest()
        record[f"export:{victim.relative_to(root).as_posix()}"] = digest
    frames.write_text(json.dumps(data))
    for path in (root / ".nebula-build/cache/outputs").rglob("*"):
        crafted = json.loads(path.read_text()) if path.is_file() else {}
        if "game/sprites/enemies.png" in crafted.get("files", {}):
            for victim in victims:
                name = victim.relative_to(root).as_posix()
                crafted["files"][name] = record[f"export:{name}"]
            path.write_text(json.dumps(crafted))
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    code, out, err = run_cli("plan")
    assert "atlas enemies  build" in out and "removes" not in out
    assert "\x1b" not in out and not any(line.startswith("::") for line in out.splitlines())
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert all(victim.is_file() for victim in victims)


def test_an_export_moved_to_another_name_of_the_same_file_is_not_deleted(project, run_cli):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "game/alias").symlink_to("sprites")
    moved = PREVIEW.replace(
        'godot = "game/sprites/enemies.tres"', 'godot = "game/alias/enemies.tres"'
    )
    (root / "images.toml").write_text(moved)
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    assert (root / "game/sprites/enemies.tres").is_file()


def test_a_file_renamed_only_in_case_goes_where_the_file_system_tells_the_names_apart(
    project, run_cli
):
    """`other.json` became `OTHER.json`: both stayed on Linux, `other.json` for good,
    "(the manifest writes or reads it)", which it did not."""
    head = PREVIEW + '\n[assets]\nmanifest = "meta/other.json"\n'
    root = project({"images.toml": head})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(head.replace("meta/other.json", "meta/OTHER.json"))
    folds = (root / "META").exists()  # macOS, Windows: one file, written over in place
    code, out, err = run_cli("plan")
    removes = "      removes meta/other.json, which it no longer writes\n"
    assert (removes in out) is not folds, out + err
    assert run_cli("apply").code == 0
    assert sorted(p.name for p in (root / "meta").iterdir()) == (
        ["other.json"] if folds else ["OTHER.json"]
    )
    assert run_cli("plan", "--detailed-exitcode").code == 0


def test_a_dropped_export_the_manifest_reads_as_data_is_kept(project, run_cli):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    rows = (
        '\n[images.frame]\nprompt = "frame {filename}"\nseed = 1\n'
        'rows = { file = "game/sprites/enemies.aseprite.json", at = "frames" }\n'
        'id = "filename"\noutput = "frames/{filename}.png"\n'
    )
    no_aseprite = PREVIEW.replace('aseprite = "game/sprites/enemies.aseprite.json"\n', "")
    (root / "images.toml").write_text(no_aseprite + rows)
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "game/sprites/enemies.aseprite.json").is_file()


def test_a_build_stopped_before_its_frame_map_removes_the_dropped_export_next_time(
    project, run_cli, monkeypatch
):
    from nebula_build.engine import derived

    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(NO_GODOT)

    def stopped(*args, **kwargs):
        raise OSError("stopped here")

    with monkeypatch.context() as patch:
        patch.setattr(derived, "_remove_dropped", stopped)
        assert run_cli("apply").code == 1
    assert (root / "game/sprites/enemies.tres").is_file()
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert not (root / "game/sprites/enemies.tres").exists()
    assert run_cli("plan").out.startswith("No changes")


@pytest.mark.parametrize("metadata", [True, False])
def test_a_trimmed_webp_member_keeps_its_box_in_the_atlas(project, run_cli, metadata):
    """The trim box goes into XMP where the format has no PNG text chunks (before, a
    trimmed `.webp` member showed as untrimmed), with `metadata = false` too."""
    webp = PREVIEW.replace(
        'output = "sprites/{kind}-{pose}.png"', 'output = "sprites/{kind}-{pose}.webp"'
    )
    if not metadata:
        webp = webp.replace("trim = true\n", "trim = true\nmetadata = false\n")
    root = project({"images.toml": webp})
    code, _, err = run_cli("apply")
    assert code == 0, err
    data = json.loads((root / "game/sprites/enemies.aseprite.json").read_text())
    for entry in data["frames"]:
        assert entry["trimmed"] is True
        assert entry["sourceSize"] == {"w": 128, "h": 128}
        assert entry["frame"]["w"] < 128
    code, out, _ = run_cli("inspect", "--json", "sprites/bat-idle.webp")
    records = json.loads(out)["metadata"]
    assert "nebula-build:trim" in records
    assert ("nebula-build" in records) is metadata and ("parameters" in records) is metadata


def test_a_member_with_a_crafted_xmp_packet_fails_nothing(project, run_cli):
    """An XMP packet naming an unknown encoding raised LookupError out of the atlas
    build and `inspect` (a traceback); it now reads as no records."""
    webp = PREVIEW.replace(
        'output = "sprites/{kind}-{pose}.png"', 'output = "sprites/{kind}-{pose}.webp"'
    )
    root = project({"images.toml": webp})
    assert run_cli("apply").code == 0
    member = root / "sprites/bat-idle.webp"
    with Image.open(member) as opened:
        opened.save(member, "WEBP", xmp=b'<?xml version="1.0" encoding="bogus-enc"?><a/>')
    code, out, err = run_cli("inspect", "sprites/bat-idle.webp")
    assert code == 0 and "Traceback" not in err
    (root / "game/sprites/enemies.png").unlink()
    code, out, err = run_cli("apply", "--force")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("tags = 5", 'atlases.enemies.tags: must be a matrix dimension in quotes (tags = "pose")'),
        ('tags = ["a", "b", "c", "d", "e"]', "or a list of up to 4"),
        ('loop = "yes"', "atlases.enemies.loop: must be true, false, or the tags that loop"),
    ],
)
def test_tags_or_loop_of_the_wrong_shape_is_one_line_in_the_manifest_s_words(
    setting, said, project, run_cli
):
    project({"images.toml": PREVIEW.replace('tags = "pose"', setting)})
    code, _, err = run_cli("validate")
    assert code == 1 and said in err and len(err.splitlines()) == 1, err
    assert "constrained" not in err


def _swollen(data: bytes, size: int) -> bytes:
    """A PNG with a private chunk of `size` zero bytes before its end: the same pixels."""
    body = b"zzZz" + bytes(size)
    chunk = struct.pack(">I", size) + body + struct.pack(">I", zlib.crc32(body))
    return data[:-12] + chunk + data[-12:]


def test_an_atlas_reads_one_members_file_at_a_time(project, run_cli):
    """A member is up to date by its digest, whatever else its file holds: eight of
    200 MiB (one object in git) took 2 GB to build their atlas, every file held at once."""
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    lock = (root / "images.lock").read_text()
    for path in sorted((root / "sprites").glob("*.png")):
        data = path.read_bytes()
        swollen = _swollen(data, 8 << 20)
        path.write_bytes(swollen)
        lock = lock.replace(sha256(data).hexdigest(), sha256(swollen).hexdigest())
    (root / "images.lock").write_text(lock)
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    assert "4 up to date" in run_cli("plan").out
    tracemalloc.start()
    try:
        code, _, err = run_cli("apply")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 0, err
    assert peak < 36 << 20, f"{peak / 2**20:.0f} MiB"  # 48 MiB before, 24 now


def test_an_atlas_members_file_over_the_byte_limit_fails_the_atlas_in_one_line(
    project, run_cli, monkeypatch
):
    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    monkeypatch.setattr("nebula_build.outputs.atlas.MAX_BYTES", 100)
    code, out, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err
    assert re.search(
        r"  atlas enemies: could not build game/sprites/enemies\.png: atlas member "
        r"enemy\[bat,idle\] 'sprites/bat-idle\.png' is \d+ bytes, over the 100 limit\n",
        err,
    ), err


def test_a_member_changed_between_the_atlas_reads_fails_the_atlas(project, run_cli, monkeypatch):
    """A review found: the pixels were taken from the second read, the trim box from the
    first, and only their sizes compared."""
    from nebula_build.state.guard import Guard

    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))
    read = Guard.read
    seen: set[str] = set()

    def swapping(self, relative, **kwargs):
        data = read(self, relative, **kwargs)
        if "atlas member" in kwargs.get("what", "") and relative in seen:
            return _swollen(data, 1)  # the same size, other bytes
        seen.add(relative)
        return data

    monkeypatch.setattr(Guard, "read", swapping)
    code, _, err = run_cli("apply")
    assert code == 1
    assert "could not build game/sprites/enemies.png: atlas member enemy[" in err, err
    assert "changed meanwhile" in err


def test_an_atlas_member_whose_header_claims_too_many_pixels_fails_in_one_line(
    project, run_cli, monkeypatch
):
    from PIL import Image

    root = project({"images.toml": PREVIEW})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(PREVIEW.replace("fps = 10", "fps = 12"))

    def bomb(*args, **kwargs):
        raise Image.DecompressionBombError("Image size (4290250000 pixels) exceeds limit")

    monkeypatch.setattr(Image, "open", bomb)
    code, _, err = run_cli("apply")
    assert code == 1 and "Traceback" not in err, err
    assert "could not build game/sprites/enemies.png: atlas member enemy[" in err, err
