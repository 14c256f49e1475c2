"""The gallery shows transparent images on a checkerboard and each check's result."""

from __future__ import annotations

import re

from tests.live.pagedata import card

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
