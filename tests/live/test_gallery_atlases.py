"""The gallery shows each atlas's sprite sheet beside the images it packs: a game's
team reviews the sheet the engine loads, not only its frames."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.live.pagedata import card, page_cards
from tests.live.test_gallery import _free_port, _get, _wait_for
from tests.manifests import PREVIEW as HEAD

SPRITES = f"""\
{HEAD}
[images.enemy]
prompt = "a {{kind}} monster"
matrix = {{ kind = ["slime", "bat"] }}
resize = [32, 32]
output = "sprites/{{kind}}.png"

[images.banner]
prompt = "a title banner"
width = 256
output = "ui/banner.png"

[atlases.enemies]
images = ["enemy[*]"]
output = "sprites/enemies.png"
godot = "sprites/enemies.tres"

[atlases.ui]
images = ["banner"]
output = "ui/sheet.png"
"""


def test_the_gallery_shows_each_atlas_after_the_images(project, run_cli):
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert "(3 images, 2 atlases)" in out
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    assert [c["name"] for c in page_cards(page)][-2:] == ["atlas enemies", "atlas ui"]
    sheet = card(page, "atlas enemies")
    assert sheet["href"] == "../../sprites/enemies.png"
    assert sheet["exists"] and sheet["status_text"] == "up to date"
    assert sheet["prompt"] == "sprite sheet of enemy[slime], enemy[bat]"
    assert sheet["details"] == {
        "packs": "2 images",
        "sheet": "sprites/enemies.png",
        "frame map": "sprites/enemies.json",
        "godot": "sprites/enemies.tres",
    }
    assert sheet["small"]  # a sheet of 128 pixels or less: enlarged with crisp pixels
    assert not card(page, "atlas ui")["small"]  # scaled down: smoothed


def test_an_atlas_not_built_yet_is_pending_with_the_plans_reason(project, run_cli):
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    manifest = root / "images.toml"
    manifest.write_text(SPRITES.replace('"bat"]', '"bat", "imp"]'), encoding="utf-8")
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    sheet = card(page, "atlas enemies")
    assert sheet["status"] == "pending"
    assert sheet["status_text"].startswith("pending build: ")
    assert sheet["details"]["packs"] == "3 images"


@pytest.mark.slow
def test_the_live_gallery_serves_the_sheet(project):
    root = project({"images.toml": SPRITES})
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(url, "atlas enemies")
        status, body = _get(f"{url}files/sprites/enemies.png")
        assert status == 200 and body == (root / "sprites/enemies.png").read_bytes()
        assert _get(f"{url}files/sprites/enemies.tres")[0] == 404  # an image, or nothing
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    assert "Traceback" not in err


def test_a_large_sheet_of_small_sprites_is_smoothed(project, run_cli):
    """A review found a sheet of many small sprites drawn with crisp pixels while the
    card scales it down, which aliases: the sheet's own size decides."""
    kinds = ", ".join(f'"k{n}"' for n in range(30))
    many = SPRITES.replace('["slime", "bat"]', f"[{kinds}]")
    root = project({"images.toml": many})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text(encoding="utf-8")
    assert card(page, "enemy[k0]")["small"]
    assert not card(page, "atlas enemies")["small"]
