"""The gallery shows transparent images on a checkerboard and each check's result."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_rows_matrix import preview
from tests.live.pagedata import card, page_cards


@contextlib.contextmanager
def _gallery_page(root: Path) -> Iterator[Any]:
    """The gallery `nebula-build gallery` wrote for `root`, open in headless Chromium
    (the test skips, or fails in CI, where Chromium or playwright is missing)."""
    from tests.live.test_gallery import BROWSER_ARGS, _chromium

    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto((root / ".nebula-build/gallery/index.html").as_uri())
            yield page
        finally:
            browser.close()


SPRITES = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128
background = "transparent"

[images.potion]
prompt = "a red health potion"
seed = 4
checks = { alpha = "required", max_kb = 64, square = true }
output = "sprites/potion.png"

[images.coin]
prompt = "a gold coin"
seed = 5
checks = { max_kb = 0.25 }
output = "sprites/coin.png"
"""


def test_cards_show_transparency_and_the_checks_measured_on_the_file(project, run_cli):
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 1  # the coin's check fails
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    potion = card(page, "potion")
    assert potion["status"] == "ok" and potion["transparent"]
    checks = potion["checks"]
    assert [passed for _, passed in checks] == [True, True, True]
    assert checks[0][0] == "alpha required: transparent pixels"
    assert re.fullmatch(r"max_kb ≤ 64: [\d.]+ KiB", checks[1][0])
    assert potion["details"]["background"] == "transparent (keyed from #FF00FF)"
    coin = card(page, "coin")
    assert coin["status"] == "failed" and coin["transparent"]
    assert coin["status_text"].startswith("failed: check failed: max_kb ≤ 0.25 (got ")


RESIZED = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 512
height = 512
background = "transparent"

[images.knight]
prompt = "a knight"
resize = [48, 48]
pad = 2
output = "sprites/knight.png"

[images.gem]
prompt = "a gem"
resize = [32, 32]
trim = true
output = "icons/gem.png"

[images.castle]
prompt = "a castle"
background = "opaque"
output = "bg/castle.png"
"""


def test_a_sprite_card_says_the_size_of_its_file(project, run_cli):
    """A 48 × 48 sprite made from a 512 × 512 generation had said "512 × 512"."""
    root = project({"images.toml": RESIZED})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    knight, gem, castle = page_cards(page)
    assert knight["details"]["size"] == "52 × 52 (generated 512 × 512)"
    assert gem["details"]["size"] == "trimmed from 32 × 32 (generated 512 × 512)"
    assert castle["details"]["size"] == "512 × 512"
    assert [c["small"] for c in (knight, gem, castle)] == [True, True, False]


@pytest.mark.browser
def test_a_small_sprite_is_enlarged_with_crisp_pixels(project, run_cli):
    """The grid had smoothed a 32 px sprite as it enlarged it: pixel art shown blurred."""
    root = project({"images.toml": RESIZED})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    with _gallery_page(root) as page:
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        rendering = page.eval_on_selector_all(
            ".card .thumb img",
            "imgs => imgs.map(i => [i.closest('.card').dataset.name, "
            "getComputedStyle(i).imageRendering])",
        )
    assert rendering == [["knight", "pixelated"], ["gem", "pixelated"], ["castle", "auto"]]


@pytest.mark.browser
def test_a_small_sprites_draws_are_shown_as_its_file_with_crisp_pixels(project, run_cli, tmp_path):
    """The draws of a 32 px sprite were its 512 px generations, smoothed: not what the
    pick delivers."""
    pixel_art = RESIZED.replace("resize = [32, 32]", 'resize = [32, 32]\npalette = "pico8"')
    root = project(
        {"images.toml": pixel_art.replace("[images.gem]", "[images.gem]\ncandidates = 3")}
    )
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    with _gallery_page(root) as page:
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        draws = page.eval_on_selector_all(
            ".card .draw .shot img",
            "imgs => imgs.map(i => [i.naturalWidth <= 32, getComputedStyle(i).imageRendering])",
        )
        page.locator('.card[data-name="gem"]').screenshot(path=str(tmp_path / "draws.png"))
    assert draws == [[True, "pixelated"]] * 3


@pytest.mark.browser
def test_a_failed_atlas_card_says_it_failed_where_its_sheet_would_be(project, run_cli, monkeypatch):
    """Its card was red with the error, and its picture's place said "not generated yet"."""
    from tests.outputs.test_engines import PREVIEW

    root = project({"images.toml": PREVIEW})
    monkeypatch.setattr("nebula_build.core.atlaspack.MAX_SHEET_SIDE", 20)
    assert run_cli("apply").code == 1
    assert run_cli("gallery").code == 0
    with _gallery_page(root) as page:
        page.wait_for_selector(".card")
        missing = page.eval_on_selector_all(
            ".card .thumb.missing",
            "divs => divs.map(d => [d.closest('.card').dataset.name, d.textContent])",
        )
    assert missing == [["atlas enemies", "no file: the last apply failed"]]


@pytest.mark.browser
def test_only_a_transparent_image_is_framed_on_a_checkerboard(project, run_cli):
    """An opaque image's letterbox, and its draws', was a dark checkerboard, which
    reads as transparency: the docs keep that for images with a transparent
    background. Opaque frames are one flat colour now."""
    images = {
        "banner": {
            "prompt": "a banner",
            "width": 256,
            "height": 64,
            "candidates": 2,
            "output": "b.png",
        },
        "coin": {"prompt": "a coin", "background": "transparent", "output": "c.png"},
    }
    root = project({"images.toml": preview(images)})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    with _gallery_page(root) as page:
        page.wait_for_selector(".card")
        backgrounds = page.eval_on_selector_all(
            ".card .thumb, .card .draw .shot",
            "frames => frames.map(f => [f.closest('.card').dataset.name, "
            "getComputedStyle(f).backgroundImage.startsWith('repeating-conic-gradient')])",
        )
    assert sorted(set(map(tuple, backgrounds))) == [("banner", False), ("coin", True)]
