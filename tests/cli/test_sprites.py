"""Game sprites through the CLI: transparency on the preview backend and the Nebula
test server, output steps that re-process with no generation, acceptance checks that
fail the build."""

from __future__ import annotations

import json
import tomllib

import pytest
from PIL import Image

from tests.conftest import fake_manifest, nebula_manifest, toml_value

PREVIEW = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128

[images.potion]
prompt = "a red health potion"
seed = 4
output = "sprites/potion.png"
"""


def manifest(**fields: object) -> str:
    return PREVIEW + "".join(f"{key} = {toml_value(value)}\n" for key, value in fields.items())


def applied(run_cli) -> dict:
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    return json.loads(out)


def corners_and_centre(path) -> tuple[list[int], int]:
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        width, height = image.size
        corners = [image.getpixel(xy)[3] for xy in ((0, 0), (width - 1, height - 1))]
        return corners, image.getpixel((width // 2, height // 2))[3]


def test_transparent_preview_is_keyed_and_tuning_the_key_regenerates_nothing(project, run_cli):
    root = project({"images.toml": manifest(background="transparent")})
    code, out, _ = run_cli("plan")
    assert "transparent: generated on the key colour #FF00FF" in out
    assert applied(run_cli)["generated"] == 1
    assert corners_and_centre(root / "sprites/potion.png") == ([0, 0], 255)
    entry = tomllib.loads((root / "images.lock").read_text())["images"]["potion"]
    assert entry["params"]["key"] == "#FF00FF"
    assert "flat solid magenta (#FF00FF) background" in entry["params"]["prompt"]

    (root / "images.toml").write_text(manifest(background="transparent", key_softness=0.05))
    code, out, _ = run_cli("plan")
    assert "reencode" in out
    result = applied(run_cli)
    assert result["generated"] == 0 and result["summary"]["reencode"] == 1

    (root / "images.toml").write_text(manifest(background="transparent", key="#00FF00"))
    code, out, _ = run_cli("plan")
    assert "regenerate" in out and '~ key: "#FF00FF" -> "#00FF00"' in out
    assert "(#00FF00) background" in out


ASSETS = '\n[assets]\nmanifest = "sprites/images.json"\n'


def test_cleanup_steps_reprocess_from_the_cache(project, run_cli):
    root = project({"images.toml": manifest(background="transparent")})
    assert applied(run_cli)["generated"] == 1
    steps = {"pixel_grid": 8, "palette": 8, "trim": True, "pad": 2, "extrude": 1}
    (root / "images.toml").write_text(manifest(background="transparent", **steps) + ASSETS)
    assert applied(run_cli)["generated"] == 0
    (listed,) = json.loads((root / "sprites/images.json").read_text())["images"]["potion"]["files"]
    with Image.open(root / "sprites/potion.png") as image:
        box = image.info["nebula-build:trim"]
        left, top, width, height = map(int, box.split(","))
        assert (width, height) == (134, 134) and left > 0 and top > 0  # padded untrimmed
        assert image.width < 128 and image.height < 128  # trimmed, then 3 px added a side
        visible = {(r, g, b) for _, (r, g, b, a) in image.getcolors(1 << 16) if a}
        assert len(visible) <= 8
        assert image.getpixel((0, 0))[3] == 0  # the pad, outside the extruded edge
        assert (listed["width"], listed["height"]) == image.size  # the asset manifest's
    (root / "images.toml").write_text(manifest(background="transparent", pad=3, extrude=2) + ASSETS)
    assert applied(run_cli)["generated"] == 0
    (listed,) = json.loads((root / "sprites/images.json").read_text())["images"]["potion"]["files"]
    assert (listed["width"], listed["height"]) == (138, 138)
    with Image.open(root / "sprites/potion.png") as image:
        assert image.size == (138, 138)


def test_a_failed_check_fails_the_build_and_loosening_it_generates_nothing(project, run_cli):
    checks = {"alpha": "required", "max_kb": 0.5, "square": True}
    root = project({"images.toml": manifest(background="transparent", checks=checks)})
    code, out, _ = run_cli("plan", "--json")
    assert json.loads(out)["actions"][0]["checks"] == checks
    code, out, err = run_cli("apply", "--json")
    assert code == 1
    result = json.loads(out)
    assert result["generated"] == 1 and result["failed"] == ["potion"]
    (outcome,) = result["results"]
    assert outcome["error"].startswith("check failed: max_kb ≤ 0.5 (got ")
    assert outcome["check_values"]["alpha"] is True
    assert outcome["check_values"]["max_kb"] > 0.5
    assert not (root / "sprites/potion.png").exists()
    assert not (root / "images.lock").exists()

    (root / "images.toml").write_text(
        manifest(background="transparent", checks={**checks, "max_kb": 64})
    )
    result = applied(run_cli)
    assert result["generated"] == 0
    assert result["results"][0]["check_values"]["square"] is True
    (root / "images.toml").write_text(
        manifest(background="transparent", checks={**checks, "max_kb": 48})
    )
    assert "~ checks.max_kb: 64 -> 48\n" in run_cli("plan").out  # as written, not 64.0


def test_an_opaque_image_fails_an_alpha_check(project, run_cli, fake_site, tmp_path):
    """A plugin's model may make transparent pixels, so the check is left to the file
    (a built-in's makes opaque ones: refused before paying, see test_sprites_first_day)."""
    checks = {"alpha": "required", "min_opaque": 0.5}
    potion = {"prompt": "a red potion", "output": "potion.png", "checks": checks}
    project({"images.toml": fake_manifest(tmp_path / "log", {"potion": potion})})
    code, _, err = run_cli("apply")
    assert code == 1
    assert "potion: check failed: alpha required (got no transparent pixel)" in err


def test_sprite_options_in_the_wrong_place_are_manifest_errors(project, run_cli):
    project({"images.toml": manifest(key="#00FF00").replace(".png", ".jpg")})
    code, _, err = run_cli("validate")
    assert code == 1
    assert 'images.potion.key: applies only with background = "transparent"' in err
    project({"images.toml": manifest(background="transparent").replace(".png", ".jpg")})
    code, _, err = run_cli("validate")
    assert "images.potion.background: a JPEG has no transparency" in err
    project({"images.toml": manifest(trim=True, widths=[32])})
    code, _, err = run_cli("validate")
    assert "images.potion.trim: trim changes the image's size" in err


def nebula_sprite(**fields: object) -> str:
    potion = {"prompt": "a red potion", "seed": 4, "output": "potion.png", **fields}
    return nebula_manifest({"potion": potion})


def test_nebula_sprite_is_keyed_and_a_checkerboard_is_refused_and_not_cached(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_sprite(background="transparent")})
    assert applied(run_cli)["generated"] == 1
    assert "(#FF00FF) background" in nebula_server.generations[0].body["prompt"]
    assert corners_and_centre(root / "potion.png") == ([0, 0], 255)

    (root / "images.toml").write_text(nebula_sprite(background="transparent", despill=False))
    assert applied(run_cli)["generated"] == 0
    assert len(nebula_server.generations) == 1

    (root / "images.toml").write_text(nebula_sprite(background="transparent", key="#0000FF"))
    nebula_server.add_faults("checkerboard")
    code, _, err = run_cli("apply")
    assert code == 1
    assert "potion: the background is a painted checkerboard" in err
    assert 'try another key (key = "#FF00FF")' in err
    assert len(nebula_server.generations) == 2
    code, out, _ = run_cli("plan")
    assert "(from cache" not in out  # the refused original was not kept
    assert applied(run_cli)["generated"] == 1
    assert len(nebula_server.generations) == 3


FOUR = "; four colours\n1a1c2c\n#5d275d\nb13e53\nFFCD75\n"


def test_a_palette_file_is_an_input_of_the_output_not_of_the_generation(project, run_cli):
    root = project(
        {
            "images.toml": manifest(background="transparent", palette="palettes/four.hex"),
            "palettes/four.hex": FOUR,
        }
    )
    assert applied(run_cli)["generated"] == 1
    with Image.open(root / "sprites/potion.png") as image:
        used = {(r, g, b) for _, (r, g, b, a) in image.getcolors(1 << 16) if a}
    assert used <= {(0x1A, 0x1C, 0x2C), (0x5D, 0x27, 0x5D), (0xB1, 0x3E, 0x53), (0xFF, 0xCD, 0x75)}
    assert run_cli("plan", "--detailed-exitcode").code == 0  # the no-op fast path
    (root / "palettes/four.hex").write_text(FOUR.replace("FFCD75", "38B764"))
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 2 and "reencode" in out
    assert applied(run_cli)["generated"] == 0
    with Image.open(root / "sprites/potion.png") as image:
        used = {(r, g, b) for _, (r, g, b, a) in image.getcolors(1 << 16) if a}
    assert used <= {(0x1A, 0x1C, 0x2C), (0x5D, 0x27, 0x5D), (0xB1, 0x3E, 0x53), (0x38, 0xB7, 0x64)}

    (root / "palettes/four.hex").write_text("1a1c2c\nnot-a-colour\n")
    code, _, err = run_cli("apply")
    assert code == 1 and "palettes/four.hex:2: not a colour (RRGGBB)" in err
    (root / "palettes/four.hex").unlink()
    code, _, err = run_cli("validate")
    assert "images.potion.palette: file not found: palettes/four.hex" in err
    (root / "images.toml").write_text(manifest(palette="nes"))
    code, _, err = run_cli("validate")
    assert "'nes' is neither a palette name (pico8) nor a .hex file" in err


def test_a_refused_candidate_draw_is_not_cached_either(project, run_cli, nebula_server):
    project({"images.toml": nebula_sprite(background="transparent", candidates=2)})
    nebula_server.add_faults("checkerboard")
    code, _, err = run_cli("apply")
    assert code == 1 and "painted checkerboard" in err
    assert len(nebula_server.generations) == 2
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    assert json.loads(out)["generated"] == 1  # only the refused draw is asked again
    assert len(nebula_server.generations) == 3


RESIZED = {"background": "transparent", "resize": [32, 32]}


def faint_and_subject(path) -> tuple[int, tuple[int, int, int, int] | None, set]:
    """How many pixels are near-invisible (0 < alpha < 8), the box of the visible
    ones (alpha ≥ 8), and the colours of the fully transparent ones."""
    with Image.open(path) as image:
        pixels = list(image.convert("RGBA").get_flattened_data())
        visible = image.getchannel("A").point([0] * 8 + [255] * 248)
        faint = sum(1 for *_, alpha in pixels if 0 < alpha < 8)
        return faint, visible.getbbox(), {pixel for pixel in pixels if pixel[3] == 0}


def test_a_resized_transparent_sprite_has_no_halo_and_trims_to_its_subject(project, run_cli):
    root = project({"images.toml": manifest(**RESIZED)})
    assert applied(run_cli)["generated"] == 1
    faint, subject, clear = faint_and_subject(root / "sprites/potion.png")
    assert faint == 0  # the lanczos resize rang: alpha 1-3 around the potion
    assert clear == {(0, 0, 0, 0)}
    left, top, right, bottom = subject

    (root / "images.toml").write_text(manifest(**RESIZED, trim=True))
    assert applied(run_cli)["generated"] == 0
    with Image.open(root / "sprites/potion.png") as image:
        assert image.info["nebula-build:trim"] == f"{left},{top},32,32"
        assert image.size == (right - left, bottom - top)


def test_the_responsive_widths_of_a_transparent_sprite_have_no_halo(project, run_cli):
    root = project({"images.toml": manifest(background="transparent", widths=[48])})
    assert applied(run_cli)["generated"] == 1
    faint, _, clear = faint_and_subject(root / "sprites/potion-48.png")
    assert faint == 0 and clear == {(0, 0, 0, 0)}


def test_max_colors_of_a_resized_sprite_counts_only_its_visible_colours(project, run_cli):
    root = project({"images.toml": manifest(**RESIZED, palette="pico8", checks={"max_colors": 16})})
    (outcome,) = applied(run_cli)["results"]
    with Image.open(root / "sprites/potion.png") as image:
        colours = {(r, g, b) for _, (r, g, b, a) in image.getcolors(1 << 16) if a >= 8}
        faint = {(r, g, b, a) for _, (r, g, b, a) in image.getcolors(1 << 16) if 0 < a < 8}
    assert outcome["check_values"]["max_colors"] == len(colours)
    assert faint == set()  # pico8's (255, 119, 168) under alpha 1, and others


#: the output keys and digests of images the halo's clearing leaves alone, as the
#: version before it made them (the lock's output_key and digest; the digests of the
#: transparent ones as the preview draws them since it marks each with its badge)
UNCHANGED = {
    "opaque, resized": (
        {"resize": [32, 32]},
        "a5259e611e6e937b0842cec24c823eab83ee71b2b140c120c18c6377b9a1e92e",
        "d540104d6cd26fac1322957e90c81152d144598f39babd30ab87f8fe494df3af",
    ),
    "transparent, not resized": (
        {"background": "transparent"},
        "86a5a21ed050e958f3e3beae9271e0ca0bb17e92fe77e701c8ca960564a862bd",
        "5cae86ff5dc064547c66e413370abda2376482be225627be545b94076cfedfab",
    ),
    "transparent, a named palette": (
        {"background": "transparent", "palette": "pico8"},
        "3ea0e24c4aff881232441e40cae496f0a0c4320edeeb0a487f036c04445ee736",
        "41f341afcb7541217edda5df51b4f0d73d534a6d785c7401e7145a638e9017e2",
    ),
    "transparent, resized nearest": (
        {**RESIZED, "resample": "nearest"},
        "a5089ce9d474dc6c4a4ee0c8fac1684c667580a2c9219a50daa30e3ddff8c6f4",
        "b126599f3e421123376a2884495fcdbdc085b9c83759eb8a17edefa8f52030a4",
    ),
}


@pytest.mark.parametrize("case", UNCHANGED)
def test_images_not_resized_smoothly_keep_their_bytes_and_output_key(project, run_cli, case):
    fields, output_key, digest = UNCHANGED[case]
    root = project({"images.toml": manifest(**fields)})
    assert applied(run_cli)["generated"] == 1
    entry = tomllib.loads((root / "images.lock").read_text())["images"]["potion"]
    assert (entry["output_key"], entry["digest"]) == (output_key, digest)


#: the output key of `manifest(**RESIZED, trim=True)` as the version that left the
#: halo made it
HALOED_KEY = "2aeee13fd2f3f11ef6a0dea19d4418f7d4e43b7658fcb729c4eb08b0358197bb"


def test_an_existing_resized_sprite_is_remade_from_the_cache_and_plan_says_why(project, run_cli):
    tile = (
        '\n[images.tile]\nprompt = "a stone floor tile"\nresize = [32, 32]\noutput = "tile.png"\n'
    )
    root = project({"images.toml": manifest(**RESIZED, trim=True) + tile})
    assert applied(run_cli)["generated"] == 2
    lock = root / "images.lock"
    entry = tomllib.loads(lock.read_text())["images"]["potion"]
    lock.write_text(lock.read_text().replace(entry["output_key"], HALOED_KEY))

    code, out, _ = run_cli("plan")
    assert code == 0
    assert (
        "potion  reencode  sprites/potion.png\n      now clears the halo of near-invisible "
        "pixels its resize leaves around a transparent sprite" in out
    )
    assert "tile" not in out  # opaque: up to date
    result = applied(run_cli)
    assert result["generated"] == 0 and result["summary"]["reencode"] == 1
    assert tomllib.loads(lock.read_text())["images"]["potion"]["output_key"] == entry["output_key"]


#: the output key of `manifest(background="transparent", palette=8)` as the version
#: before `palette_visible` made it (its transparent pixels took a colour)
PALETTE_SHARED_KEY = "3283cecc21b3e25fa3cbc4e3c99384b9708cf51e52a0c74e9993de8a4b60b5f0"


def test_a_transparent_sprites_palette_gives_every_colour_to_visible_pixels(project, run_cli):
    root = project({"images.toml": manifest(background="transparent", palette=8)})
    assert applied(run_cli)["generated"] == 1
    with Image.open(root / "sprites/potion.png") as image:
        pixels = image.convert("RGBA").getcolors(1 << 16)
    assert len({(r, g, b) for _, (r, g, b, a) in pixels if a}) == 8  # it had been 7

    lock = root / "images.lock"
    entry = tomllib.loads(lock.read_text())["images"]["potion"]
    lock.write_text(lock.read_text().replace(entry["output_key"], PALETTE_SHARED_KEY))
    code, out, _ = run_cli("plan")
    assert code == 0
    assert (
        "potion  reencode  sprites/potion.png\n      now gives every colour of its palette "
        "to visible pixels (its transparent ones took one)" in out
    )
    result = applied(run_cli)
    assert result["generated"] == 0 and result["summary"]["reencode"] == 1


#: the output key of `manifest(**RESIZED, palette=8)` as the version before both
#: `alpha_floor` and `palette_visible` made it
BEFORE_BOTH_KEY = "c154fe206cc8ea8e597c51b28194024a6b205001a1e46699a4c2480cdbe3248f"


def test_a_sprite_that_gets_both_new_steps_is_told_both(project, run_cli):
    root = project({"images.toml": manifest(**RESIZED, palette=8)})
    assert applied(run_cli)["generated"] == 1
    lock = root / "images.lock"
    entry = tomllib.loads(lock.read_text())["images"]["potion"]
    lock.write_text(lock.read_text().replace(entry["output_key"], BEFORE_BOTH_KEY))

    code, out, _ = run_cli("plan")

    assert code == 0
    assert (
        "potion  reencode  sprites/potion.png\n      now clears the halo of near-invisible "
        "pixels its resize leaves around a transparent sprite; now gives every colour of its "
        "palette to visible pixels (its transparent ones took one)" in out
    ), out


#: the output key of `manifest(background="transparent", trim=True, extrude=2, pad=3)`
#: as the version that padded before extruding made it
PADDED_FIRST_KEY = "b55df8a310699f60d528c69af9375ad11ff2ff81438a2ea9ef33c9f69b13fff4"


def test_a_sprite_padded_before_it_was_extruded_is_reprocessed_for_free(project, run_cli):
    root = project({"images.toml": manifest(background="transparent", trim=True, extrude=2, pad=3)})
    assert applied(run_cli)["generated"] == 1
    lock = root / "images.lock"
    entry = tomllib.loads(lock.read_text())["images"]["potion"]
    lock.write_text(lock.read_text().replace(entry["output_key"], PADDED_FIRST_KEY))

    code, out, _ = run_cli("plan")

    assert code == 0
    assert (
        "potion  reencode  sprites/potion.png\n      now repeats its edge pixels inside its "
        "padding (`extrude` had repeated the padding)" in out
    ), out
    result = applied(run_cli)
    assert result["generated"] == 0 and result["summary"]["reencode"] == 1
