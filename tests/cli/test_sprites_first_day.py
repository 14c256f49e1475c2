"""A game developer's first day through the CLI: what the asset manifest, the plan and
the manifest's errors say about sprites, atlases and their engine exports."""

from __future__ import annotations

import json

from tests.conftest import toml_value

GAME = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128

[assets]
manifest = "game/assets/assets.json"

[images.potion]
prompt = "a red health potion"
seed = 4
output = "game/assets/potion.png"
"""


def manifest(**fields: object) -> str:
    return GAME + "".join(f"{key} = {toml_value(value)}\n" for key, value in fields.items())


def test_a_transparent_sprites_alt_text_is_its_prompt_without_the_key_colour(project, run_cli):
    root = project({"images.toml": manifest(background="transparent")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    listed = json.loads((root / "game/assets/assets.json").read_text())["images"]["potion"]
    assert listed["alt"] == "a red health potion"  # its background is transparent now
    lock = (root / "images.lock").read_text()
    assert "a red health potion, isolated on a flat solid magenta (#FF00FF)" in lock


def test_more_candidate_draws_leave_the_asset_manifest_alone(project, run_cli):
    root = project({"images.toml": manifest()})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(manifest(candidates=3))
    code, out, _ = run_cli("plan")
    assert "2 candidate draws to make" in out
    assert "asset manifest" not in out  # draws stay in the cache: it lists none of them
    code, out, _ = run_cli("apply")
    assert code == 0 and "asset manifest" not in out
    assert run_cli("plan").out.startswith("No changes")


def test_a_jpeg_in_a_transparent_style_names_the_image_not_only_the_style(project, run_cli):
    style = '[styles.sprite]\nbackground = "transparent"\n'
    images = (
        '[images.sword]\nstyle = "sprite"\nprompt = "a sword"\noutput = "game/sword.png"\n'
        '[images.shield]\nstyle = "sprite"\nprompt = "a shield"\noutput = "game/shield.jpg"\n'
    )
    project({"images.toml": GAME.replace("[images.potion]", style + images + "[images.potion]")})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err == (
        "error: images.toml:21:1: images.shield.output: a JPEG has no transparency: write the "
        "image as .png, .webp or .avif (its background is set in styles.sprite)\n"
    )


KNIGHT = """
[images.knight]
prompt = "a knight, {anim} frame {frame}"
matrix = { anim = ["idle", "walk"], frame = ["0", "1"] }
output = "game/assets/knight/{anim}_{frame}.png"

[atlases.knight]
images = ["knight[*]"]
output = "game/assets/knight.png"
tags = "anim"
godot_root = "game"
"""


def test_a_godot_export_godot_cannot_load_is_a_manifest_error(project, run_cli):
    root = project({"images.toml": GAME + KNIGHT + 'godot = "game/assets/knight.res"\n'})
    code, _, err = run_cli("validate")
    assert code == 1
    assert err == (
        "error: images.toml:27:1: atlases.knight.godot: Godot reads a text resource only "
        "from a .tres file (got .res): end the path with .tres\n"
    )
    (root / "images.toml").write_text(GAME + KNIGHT + 'godot = "knight.tres"\n')
    code, _, err = run_cli("validate")
    assert code == 1
    assert err == (
        "error: images.toml:27:1: atlases.knight.godot: knight.tres is outside the Godot "
        "project game (godot_root), which loads only its own files: put it in that folder\n"
    )
    (root / "images.toml").write_text(GAME + KNIGHT + 'godot = "game/assets/knight.tres"\n')
    assert run_cli("apply").code == 0
    resource = (root / "game/assets/knight.tres").read_text()
    assert 'path="res://assets/knight.png"' in resource
    assert '"name": &"idle"' in resource and '"name": &"walk"' in resource


def test_the_plan_says_a_suffix_asks_for_the_key_colour(project, run_cli):
    project({"images.toml": manifest(background="transparent")})
    code, out, _ = run_cli("plan")
    assert code == 0
    assert (
        "      transparent: generated on the key colour #FF00FF (a suffix added to the prompt "
        "asks for it), then keyed out\n"
    ) in out


def test_extrude_repeats_the_sprites_edge_inside_its_padding(project, run_cli):
    """Against texture bleeding the edge pixels are repeated, then the padding added
    around them: extruding the padding repeated only transparent pixels."""
    from PIL import Image

    fields = {"background": "transparent", "trim": True, "extrude": 2, "pad": 3}
    root = project({"images.toml": manifest(**fields)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    with Image.open(root / "game/assets/potion.png") as opened:
        alpha = opened.convert("RGBA").getchannel("A")
    width, height = alpha.size

    def row(y: int) -> list[int]:
        return [alpha.getpixel((x, y)) for x in range(5, width - 5)]

    def column(x: int) -> list[int]:
        return [alpha.getpixel((x, y)) for y in range(5, height - 5)]

    for depth in (0, 2):
        assert not any(row(depth)) and not any(row(height - 1 - depth))
        assert not any(column(depth)) and not any(column(width - 1 - depth))
    assert any(row(5)) and row(3) == row(4) == row(5)  # the edge, repeated twice outward
    assert any(column(5)) and column(3) == column(4) == column(5)


def test_images_sharing_one_generation_are_counted_so_in_the_plan(project, run_cli):
    icons = manifest() + (
        '\n[images.potion_2x]\nprompt = "a red health potion"\nseed = 4\n'
        'output = "game/assets/potion@2x.png"\nresize = [256, 256]\n'
    )
    project({"images.toml": icons})
    code, out, _ = run_cli("plan")
    assert code == 0
    assert "Plan: 2 to generate in 1 generation, 0 to delete, 1 asset manifest" in out
    assert "Generations: 1 on preview" in out


def test_the_caps_count_images_sharing_one_generation_as_the_plan_does(project, run_cli):
    icons = manifest() + (
        '\n[images.potion_2x]\nprompt = "a red health potion"\nseed = 4\n'
        'output = "game/assets/potion@2x.png"\nresize = [256, 256]\n'
    )
    project({"images.toml": icons})
    code, _, err = run_cli("apply", "--max-generations", "0")
    assert code == 1 and err == (
        "error: this apply would generate 2 images in 1 generation, more than "
        "--max-generations 0; nothing was generated\n"
    )
    code, _, err = run_cli("apply", "--locked")
    assert code == 2
    assert "--locked: 2 images in 1 generation would need generating" in err
    assert run_cli("apply", "--max-generations", "1").code == 0


def test_a_transparency_check_that_can_only_fail_is_refused_before_paying(project, run_cli):
    """A model makes opaque pixels: `alpha = "required"` without a transparent
    background fails every draw, and the fix changes the key (a second payment)."""
    root = project({"images.toml": manifest(checks={"alpha": "required"})})
    for command in ("validate", "plan", "apply"):
        code, _, err = run_cli(command)
        assert (code, err) == (
            1,
            'error: images.toml:16:1: images.potion.checks: checks.alpha = "required" fails '
            "every image a model makes opaque, as preview's do: set background = "
            '"transparent" (or pad, which adds transparent pixels)\n',
        ), command
    assert not (root / "game").exists()
    for fix in ({"background": "transparent"}, {"pad": 2}):
        root.joinpath("images.toml").write_text(manifest(checks={"alpha": "required"}, **fix))
        code, _, err = run_cli("apply")
        assert code == 0, err


def test_a_transparent_sprites_prompt_change_is_shown_in_the_words_written(project, run_cli):
    """The plan showed `"a red health potion, isolated on a flat solid magenta (#FF00FF)
    background, no shadow, no gradient" -> "a big red health potion, isolated on …"`:
    the words typed were hard to find. The "transparent:" line says what is added."""
    root = project({"images.toml": manifest(background="transparent")})
    assert run_cli("apply").code == 0
    edited = manifest(background="transparent").replace("a red health", "a big red health")
    (root / "images.toml").write_text(edited)
    code, out, _ = run_cli("plan")
    assert code == 0
    assert '~ prompt: "a red health potion" -> "a big red health potion"\n' in out, out
    assert "transparent: generated on the key colour #FF00FF" in out
    # a change of key colour with the words: both prompts whole, so the change shows
    (root / "images.toml").write_text(edited.replace("a big red", "a big pink"))
    code, out, _ = run_cli("plan")
    assert "no shadow, no gradient" in out.split("~ prompt:")[1].splitlines()[0], out
