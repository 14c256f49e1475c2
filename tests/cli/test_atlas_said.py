"""What plan, status and apply say of an atlas: which ones --target concerns, how
many files a build wrote, and many members' names, said a few at a time."""

from __future__ import annotations

import json
import re

SPRITES = """\
version = 1

[defaults]
backend = "preview"
model = "stabilityai/stable-diffusion-xl-base-1.0"
width = 64
height = 64

[images.hero]
prompt = "a hero knight"
output = "sprites/hero.png"

[images.hero-cap]
prompt = "a hero knight in a red cap"
output = "sprites/hero-cap.png"

[images.enemy]
prompt = "a {kind} monster"
matrix = { kind = ["slime", "bat", "ghost", "imp", "orc", "rat"] }
output = "sprites/{kind}.png"

[atlases.enemies]
images = ["enemy[*]"]
output = "sprites/enemies.png"
aseprite = "sprites/enemies.aseprite.json"
godot = "sprites/enemies.tres"

[atlases.heroes]
images = ["hero", "hero-cap"]
output = "sprites/heroes.png"
"""


def test_target_concerns_only_the_atlases_holding_it_in_status_plan_and_apply(project, run_cli):
    """Before, `status --target hero` (and plan's) also listed atlas enemies, which does
    not hold hero, and plan said atlas heroes would be built where apply, lacking
    hero-cap, built nothing."""
    root = project({"images.toml": SPRITES})
    code, out, err = run_cli("status", "--target", "hero")
    assert code == 0, err
    assert "enemies" not in out, out
    assert re.search(r"atlas heroes +waiting for hero-cap +sprites/heroes.png", out), out
    code, out, err = run_cli("plan", "--target", "hero")
    assert code == 0, err
    assert "enemies" not in out and "    atlas heroes  waiting  sprites/heroes.png\n" in out, out
    data = json.loads(run_cli("plan", "--target", "hero", "--json").out)
    assert [(f["name"], f["action"]) for f in data["files"]] == [("atlas heroes", "waiting")]
    code, out, err = run_cli("apply", "--target", "hero")
    assert code == 0, err
    assert "built atlas" not in out + err and not (root / "sprites/heroes.png").exists()

    code, out, err = run_cli("plan", "--target", "hero-cap")
    assert code == 0, err
    assert "+ atlas heroes  build  sprites/heroes.png\n" in out and "enemies" not in out, out
    code, out, err = run_cli("apply", "--target", "hero-cap")
    assert code == 0, err
    assert "built atlas heroes sprites/heroes.png" in out + err and "enemies" not in out + err


def test_an_apply_counts_the_atlases_it_built_and_their_files(project, run_cli):
    """Before: "1 file built" for an atlas that wrote its sheet, frame map, Aseprite
    JSON and Godot resource."""
    project({"images.toml": SPRITES})
    code, out, err = run_cli("apply", "--target", "enemy[*]")
    assert code == 0, err
    assert ", 1 atlas built (4 files), 0 failed." in out, out
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert ", 1 atlas built (2 files), 0 failed." in out, out


def test_many_members_are_said_a_few_by_name_wherever_an_atlas_lists_them(project, run_cli):
    """Before, `members change:` named every member (41 of them) before "… and 38 more
    left", and `waiting for` named every missing one."""
    root = project({"images.toml": SPRITES})
    code, out, err = run_cli("status", "--target", "enemy[slime]")
    assert code == 0, err
    waiting = "waiting for enemy[bat], enemy[ghost], enemy[imp] and 2 more"
    assert waiting in out, out
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(_foes(SPRITES).replace("{kind}.png", "foe-{kind}.png"))
    code, out, err = run_cli("plan")
    assert code == 0, err
    reason = (
        "      enemy[bat], enemy[ghost], enemy[imp] and 3 more left; "
        "foe[slime], foe[bat], foe[ghost] and 3 more joined\n"
    )
    assert reason in out, out


def _foes(manifest: str) -> str:
    return manifest.replace("images.enemy]", "images.foe]").replace('"enemy[*]"', '"foe[*]"')


def test_a_renamed_member_is_said_as_its_rename(project, run_cli):
    """Before: 'members change: hero, hero-hat; hero-cap left; hero-hat joined', and for
    six renamed the six new names twice and the six old ones."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    hat = SPRITES.replace('"hero-cap"', '"hero-hat"').replace(
        "[images.hero-cap]", "[images.hero-hat]"
    )
    (root / "images.toml").write_text(hat.replace('"a hero knight"', '"a hero knight!"'))
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "      members change: hero; hero-cap renamed to hero-hat\n" in out, out

    (root / "images.toml").write_text(_foes(SPRITES))
    code, out, err = run_cli("plan")
    assert code == 0, err
    reason = (
        "      members change: enemy[slime] renamed to foe[slime], enemy[bat] renamed to "
        "foe[bat], enemy[ghost] renamed to foe[ghost] and 3 more\n"
    )
    assert reason in out, out


BONNET = """
[images.bonnet]
prompt = "a hero's bonnet"
output = "sprites/bonnet.png"
"""


def _joins(manifest: str, member: str) -> str:
    return manifest.replace('"hero-cap"]', f'"hero-cap", "{member}"]')


def _atlas_reason(run_cli, name: str = "heroes") -> str:
    """The atlas's reason in `plan`, checked to be the one `plan --json` gives."""
    code, out, err = run_cli("plan")
    assert code == 0, err
    lines = out.splitlines()
    said = lines[lines.index(f"  ~ atlas {name}  build  sprites/{name}.png") + 1].strip()
    data = json.loads(run_cli("plan", "--json").out)
    assert [f["reason"] for f in data["files"] if f["name"] == f"atlas {name}"] == [said]
    return said


def test_a_member_that_joins_is_said_once_as_joining(project, run_cli):
    """Before: 'members change: bonnet; bonnet joined', the new member named twice, and
    five new ones 'members change: foe[a], foe[b], foe[c] and 2 more; foe[a], foe[b],
    foe[c] and 2 more joined'."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(_joins(SPRITES, "bonnet") + BONNET)
    assert _atlas_reason(run_cli) == "bonnet joined"

    edited = SPRITES.replace('"a hero knight"', '"a hero knight!"')
    (root / "images.toml").write_text(_joins(edited, "bonnet") + BONNET)
    assert _atlas_reason(run_cli) == "members change: hero; bonnet joined"

    hat = edited.replace('"hero-cap"', '"hero-hat"').replace(
        "[images.hero-cap]", "[images.hero-hat]"
    )
    (root / "images.toml").write_text(hat.replace('"hero-hat"]', '"hero-hat", "bonnet"]') + BONNET)
    said = "members change: hero; hero-cap renamed to hero-hat; bonnet joined"
    assert _atlas_reason(run_cli) == said


def test_what_else_changed_is_said_beside_a_member_joining(project, run_cli):
    """Before: 'its options changed' for an atlas whose padding changed and which an
    image already built joined (the joining unsaid), 'members change: bonnet; its
    options changed' for a new image joining, and 'new export sprites/heroes.tres'
    for two new exports."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    padded = SPRITES.replace(
        'output = "sprites/heroes.png"', 'output = "sprites/heroes.png"\npadding = 4'
    )
    (root / "images.toml").write_text(_joins(padded, "enemy[bat]"))
    assert _atlas_reason(run_cli) == "its options changed; enemy[bat] joined"
    (root / "images.toml").write_text(_joins(padded, "bonnet") + BONNET)
    assert _atlas_reason(run_cli) == "its options changed; bonnet joined"

    exported = SPRITES.replace(
        'output = "sprites/heroes.png"',
        'output = "sprites/heroes.png"\n'
        'godot = "sprites/heroes.tres"\naseprite = "sprites/heroes.ase.json"',
    )
    (root / "images.toml").write_text(_joins(exported, "bonnet") + BONNET)
    said = "new exports sprites/heroes.ase.json, sprites/heroes.tres; bonnet joined"
    assert _atlas_reason(run_cli) == said


def _sheet(root) -> tuple[bytes, int, bytes, int]:
    sheet, frames = root / "sprites/heroes.png", root / "sprites/heroes.json"
    return (
        sheet.read_bytes(),
        sheet.stat().st_mtime_ns,
        frames.read_bytes(),
        frames.stat().st_mtime_ns,
    )


def _atlas_up_to_date(run_cli) -> None:
    code, out, err = run_cli("plan")
    assert code == 0, err
    assert "atlas" not in out, out
    data = json.loads(run_cli("plan", "--json").out)
    heroes = [(f["action"], f["reason"]) for f in data["files"] if f["name"] == "atlas heroes"]
    assert heroes == [("noop", "up to date")], data["files"]


def test_a_member_moved_or_restored_leaves_its_atlas_as_it_is(project, run_cli):
    """Before: a member whose output only moved (or was restored from the cache) had
    plan say '~ atlas heroes  build … members change: hero' and count '1 atlas to
    build', which apply then did not build: the sheet is made from the members' names
    and bytes, never their paths."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    built = _sheet(root)
    moved = SPRITES.replace('"sprites/hero.png"', '"sprites/moved/hero.png"')
    (root / "images.toml").write_text(moved)
    _atlas_up_to_date(run_cli)
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "atlas" not in out + err and _sheet(root) == built, out
    assert run_cli("plan").out.startswith("No changes"), run_cli("plan").out

    (root / "sprites/moved/hero.png").unlink()
    _atlas_up_to_date(run_cli)
    assert run_cli("apply").code == 0 and _sheet(root) == built

    (root / "images.toml").write_text(moved.replace("sprites/moved/", "sprites/again/"))
    code, out, err = run_cli("watch", "--once")
    assert code == 0, err
    assert "atlas" not in out + err and _sheet(root) == built, out
    assert run_cli("plan").out.startswith("No changes")

    # its next real build takes the member from where it is now
    (root / "images.toml").write_text(
        moved.replace("sprites/moved/", "sprites/again/").replace("a red cap", "a blue cap")
    )
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "built atlas heroes sprites/heroes.png" in out + err, out + err
    assert not (root / "sprites/hero.png").exists() and _sheet(root)[0] != built[0]


def test_a_member_re_encoded_or_renamed_still_rebuilds_its_atlas(project, run_cli):
    """A re-encode changes the member's pixels, a rename its frame's name: both rebuild."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(SPRITES.replace('"sprites/hero.png"', '"sprites/hero.webp"'))
    assert _atlas_reason(run_cli) == "members change: hero"
    hat = SPRITES.replace('"hero-cap"', '"hero-hat"').replace(
        "[images.hero-cap]", "[images.hero-hat]"
    )
    (root / "images.toml").write_text(hat)
    assert _atlas_reason(run_cli) == "members change: hero-cap renamed to hero-hat"


def test_an_fps_too_small_for_a_frame_s_duration_is_refused_at_its_key(project, run_cli):
    """`fps = 5e-324` passed validate and plan, then every apply ended in an
    OverflowError as the Aseprite writer made 1000 / fps an integer, the atlas never
    built; `fps = 1e-300` wrote a 304-digit frame duration."""
    manifest = SPRITES.replace(
        'godot = "sprites/enemies.tres"\n', 'godot = "sprites/enemies.tres"\nfps = 5e-324\n'
    )
    root = project({"images.toml": manifest})
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert (code, out) == (1, ""), err
        assert (
            err
            == "error: images.toml:27:1: atlases.enemies.fps: must be at least 0.1 (got 5e-324)\n"
        )
    assert not (root / "sprites").exists()
    root.joinpath("images.toml").write_text(manifest.replace("5e-324", "0.1"))
    code, out, err = run_cli("apply")
    assert code == 0, err
    frames = json.loads((root / "sprites/enemies.aseprite.json").read_text())["frames"]
    assert {frame["duration"] for frame in frames} == {10_000}
