"""Game sprites, the review's cases: bad palette files refused before anything is paid
for, bounded sprite options, and exports and checks that describe the delivered file."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from PIL import Image

from tests.cli.test_sprites import FOUR, RESIZED, applied, manifest, nebula_sprite

SECRET = "API_TOKEN=hunter2"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"1a1c2c\n{SECRET}\n", "palettes/p.hex:2: not a colour (RRGGBB)"),
        ("nope\n", "palettes/p.hex:1: not a colour (RRGGBB)"),
        ("", "palettes/p.hex: a palette has 1-256 colours (found none)"),
        ("; only a comment\n", "palettes/p.hex: a palette has 1-256 colours (found none)"),
        ("000000\n" * 257, "palettes/p.hex:257: a palette has 1-256 colours (more)"),
    ],
)
def test_a_bad_palette_file_is_a_manifest_error_before_any_generation(
    project, run_cli, nebula_server, content, message
):
    project(
        {
            "images.toml": nebula_sprite(background="transparent", palette="palettes/p.hex"),
            "palettes/p.hex": content,
        }
    )
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, command
        assert f"images.potion.palette: {message}" in err
        assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err
        assert SECRET not in err + out  # a palette's content is never echoed
    assert len(nebula_server.generations) == 0


def test_a_huge_palette_file_is_refused_by_its_size(project, run_cli):
    project(
        {
            "images.toml": manifest(palette="palettes/p.hex"),
            "palettes/p.hex": "000000\n" * 20_000,
        }
    )
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.potion.palette: palettes/p.hex: a palette file is at most 64 KiB" in err


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_a_palette_file_larger_than_a_palette_is_refused_before_it_is_read(
    project, run_cli, command
):
    """A 64 MiB file (up to 256 MiB) was read whole, and hashed, before its 64 KiB limit
    was checked; its size refuses it now, with the same error, reading none of it."""
    root = project({"images.toml": manifest(palette="palettes/p.hex")})
    (root / "palettes").mkdir()
    with (root / "palettes" / "p.hex").open("wb") as sparse:
        sparse.truncate(64 << 20)
    tracemalloc.start()
    try:
        code, out, err = run_cli(command)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 1
    assert err.splitlines()[0].endswith(
        "images.potion.palette: palettes/p.hex: a palette file is at most 64 KiB "
        "(this one is 67,108,864 bytes)"
    )
    assert "Traceback" not in err
    assert peak < 16 << 20


def test_a_valid_palette_still_works_and_the_no_op_plan_stays_fast(project, run_cli):
    project(
        {
            "images.toml": manifest(palette="palettes/p.hex"),
            "palettes/p.hex": "; two\n000000\n#FFFFFF\n",
        }
    )
    assert applied(run_cli)["generated"] == 1
    assert run_cli("plan", "--detailed-exitcode").code == 0
    code, out, _ = run_cli("plan", "--json")
    assert json.loads(out)["summary"].get("create", 0) == 0


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (256, "images.potion.pixel_grid: 256 is larger than the generated 128×128 image"),
        (48, "images.potion.pixel_grid: 48 does not divide the generated 128×128 image; 32 does"),
    ],
)
def test_a_pixel_grid_that_does_not_fit_the_image_is_a_manifest_error(
    project, run_cli, grid, message
):
    project({"images.toml": manifest(pixel_grid=grid)})
    for command in ("validate", "apply"):
        code, _, err = run_cli(command)
        assert code == 1 and message in err and "Traceback" not in err


def test_a_pixel_grid_snaps_whole_cells(project, run_cli):
    root = project({"images.toml": manifest(background="transparent", pixel_grid=32)})
    assert applied(run_cli)["generated"] == 1
    with Image.open(root / "sprites/potion.png") as image:
        pixels = image.convert("RGBA").load()
        for top in range(0, 128, 32):
            for left in range(0, 128, 32):
                cell = {pixels[left + x, top + y] for x in range(32) for y in range(32)}
                assert len(cell) == 1, (left, top)


def visible_colours(path) -> int:
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    return len({(r, g, b) for _, (r, g, b, a) in rgba.getcolors(1 << 20) if a})


def webp(**fields: object) -> str:
    return manifest(**fields).replace("sprites/potion.png", "sprites/potion.webp")


def test_checks_measure_the_delivered_file_not_the_pixels_before_encoding(project, run_cli):
    lossy = {"background": "transparent", "palette": "pico8", "quality": 70}
    root = project({"images.toml": webp(**lossy, checks={"max_colors": 100_000})})
    result = applied(run_cli)
    delivered = visible_colours(root / "sprites/potion.webp")
    assert delivered > 16  # the lossy encoder's colours, beyond the palette's 16
    assert result["results"][0]["check_values"]["max_colors"] == delivered

    (root / "images.toml").write_text(webp(**lossy, checks={"max_colors": 16}))
    code, out, err = run_cli("apply")
    assert code == 1 and f"check failed: max_colors ≤ 16 (got {delivered})" in err


def test_a_blank_answer_on_the_key_colour_is_refused_and_not_cached(
    project, run_cli, nebula_server
):
    root = project({"images.toml": nebula_sprite(background="transparent")})
    nebula_server.add_faults("blank")
    code, _, err = run_cli("apply")
    assert code == 1 and "potion: no subject: 0.0% of the image differs from the key" in err
    assert not (root / "potion.png").exists()
    assert applied(run_cli)["generated"] == 1  # the refused original was not kept


def test_pad_on_a_jpeg_is_a_manifest_error(project, run_cli):
    project({"images.toml": manifest(pad=4).replace(".png", ".jpg")})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "images.potion.pad: pad adds transparent pixels and a JPEG has none" in err


def test_the_gallery_shows_a_transparent_image_s_draws_keyed(project, run_cli):
    root = project({"images.toml": manifest(background="transparent", candidates=2)})
    assert run_cli("apply").code == 0
    code, _, err = run_cli("gallery")
    assert code == 0, err
    folder = root / ".nebula-build/gallery"
    copies = sorted((folder / "draws").iterdir())
    assert len(copies) == 2
    for copy in copies:
        with Image.open(copy) as image:
            rgba = image.convert("RGBA")
        assert rgba.getpixel((0, 0))[3] == 0  # the key colour, keyed away
        assert rgba.getpixel((64, 64))[3] == 255


def _visible(path) -> tuple[tuple[int, int], set, bytes]:
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    used = {(r, g, b) for _, (r, g, b, a) in rgba.getcolors(1 << 16) if a}
    return rgba.size, used, rgba.tobytes()


def test_the_gallery_shows_each_draw_as_its_output_would_be(project, run_cli):
    """Draws were shown as generated (128², every colour, off the grid) where the output
    is a 32² sprite of a palette file's four colours: a pick made on pixels no file has."""
    sprite = manifest(**RESIZED, pixel_grid=4, palette="palettes/four.hex", candidates=2)
    root = project({"images.toml": sprite, "palettes/four.hex": FOUR})
    assert run_cli("apply").code == 0
    code, _, err = run_cli("gallery")
    assert code == 0, err
    copies = sorted((root / ".nebula-build/gallery/draws").iterdir())
    output = _visible(root / "sprites/potion.png")
    shown = [_visible(copy) for copy in copies]
    assert len(shown) == 2 and output in shown  # draw 0, picked, is the very output
    four = {(0x1A, 0x1C, 0x2C), (0x5D, 0x27, 0x5D), (0xB1, 0x3E, 0x53), (0xFF, 0xCD, 0x75)}
    for size, used, _ in shown:
        assert size == (32, 32) and used <= four
    (root / "palettes/four.hex").write_text(FOUR.replace("FFCD75", "38B764"))
    assert run_cli("gallery").code == 0  # before apply: the draws as apply would make them
    for copy in copies:
        assert _visible(copy)[1] <= four - {(0xFF, 0xCD, 0x75)} | {(0x38, 0xB7, 0x64)}
