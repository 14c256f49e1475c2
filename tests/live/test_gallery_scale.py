"""The gallery of a large project: thumbnails made once per output, and a page that
builds one page of cards at a time while its filters run over every card."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.live.pagedata import card, page_cards
from tests.live.test_gallery import BROWSER_ARGS, _chromium, _wait_for
from tests.live.test_review import _request, _start_watch, _stop

LARGE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 512
height = 384

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
output = "img/hero.png"

[images.potion]
prompt = "a red health potion"
width = 512
height = 512
background = "transparent"
output = "img/potion.png"

[images.icon]
prompt = "a small icon"
width = 128
height = 128
output = "img/icon.png"
"""


def _thumbs(root: Path) -> dict[str, int]:
    """The thumbnail folder: name → modification time."""
    folder = root / ".nebula-build/thumbs"
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def test_thumbnails_are_made_once_per_output_and_follow_it(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert "made 2 thumbnails" in out
    first = _thumbs(root)
    assert len(first) == 2
    page = (root / ".nebula-build/gallery/index.html").read_text()
    folder = root / ".nebula-build/gallery"
    for name, size, mode in (("hero", (256, 192), "RGB"), ("potion", (256, 256), "RGBA")):
        shown = card(page, name)
        assert shown["thumb"].startswith("../thumbs/") and shown["thumb"].endswith(".webp")
        with Image.open(folder / shown["thumb"]) as thumb:
            assert (thumb.format, thumb.size, thumb.mode) == ("WEBP", size, mode)
            if mode == "RGBA":  # the keyed background stays transparent
                assert thumb.getextrema()[3][0] == 0
        assert (folder / shown["href"]).resolve() == root / f"img/{name}.png"  # a click: full
    assert card(page, "icon")["thumb"] is None  # no larger than a thumbnail

    code, out, _ = run_cli("gallery")
    assert code == 0 and "made " not in out
    assert _thumbs(root) == first  # none made again, none rewritten

    edited = LARGE.replace("a lighthouse at dusk", "a lighthouse in a storm")
    (root / "images.toml").write_text(edited)
    assert run_cli("apply").code == 0
    code, out, _ = run_cli("gallery", "--target", "hero")
    assert "made 1 thumbnail" in out
    assert len(_thumbs(root)) == 3  # a gallery of some images prunes nothing
    code, out, _ = run_cli("gallery")
    assert code == 0 and "made " not in out
    now = _thumbs(root)
    assert len(now) == 2 and card(page, "potion")["thumb"].rsplit("/", 1)[1] in now
    assert card(page, "hero")["thumb"].rsplit("/", 1)[1] not in now  # the old one is gone


def test_an_output_that_does_not_decode_gets_no_thumbnail(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    (root / "img/hero.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 4096)
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert "1 image could not be read" in out
    page = (root / ".nebula-build/gallery/index.html").read_text()
    assert card(page, "hero")["thumb"] is None and card(page, "potion")["thumb"]


def test_a_prompt_is_text_on_the_page_never_markup(project, run_cli):
    prompt = "a sign reading </script><script>alert(1)</script> & <b>bold</b>"
    manifest = LARGE.replace("a small icon", prompt.replace('"', '\\"'))
    root = project({"images.toml": manifest})
    assert run_cli("gallery", "--target", "icon").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    assert "<script>alert" not in page and "<b>" not in page
    assert card(page, "icon")["prompt"] == prompt  # the page's script sets it as text


def test_the_live_gallery_serves_the_thumbnails_it_shows_and_nothing_else(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "up to date")
        page = _request(port, "GET", "/")[2].decode()
        thumb = card(page, "hero")["thumb"]
        assert thumb.startswith("/thumbs/")
        status, headers, body = _request(port, "GET", thumb)
        assert status == 200 and headers["Content-Type"] == "image/webp"
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (256, 192)
        (root / ".nebula-build/thumbs/stray.webp").write_bytes(b"RIFF")
        for path in ("/thumbs/stray.webp", "/thumbs/../images.lock", f"{thumb}x"):
            assert _request(port, "GET", path)[0] == 404, path
    finally:
        err = _stop(process)
    assert "Traceback" not in err


def _many(count: int) -> str:
    parts = [
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n'
    ]
    for n in range(count):
        parts.append(
            f'\n[images.sprite-{n:05}]\nprompt = "sprite {n} of a fox"\n'
            f'output = "out/sprite-{n:05}.png"\n'
        )
    # the last image has candidates: the page then steps with n/p and j/k
    parts.append(
        '\n[images.zebra]\nprompt = "a striped zebra"\ncandidates = 2\noutput = "zebra.png"\n'
    )
    return "".join(parts)


@pytest.mark.browser
@pytest.mark.slow
def test_a_large_gallery_builds_one_page_of_cards_and_filters_every_card(
    project, run_cli, tmp_path
):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    count = 3000
    root = project({"images.toml": _many(count)})
    assert run_cli("apply", "--target", "sprite-00000", "--target", "zebra").code == 0
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert len(page_cards((root / ".nebula-build/gallery/index.html").read_text())) == count + 1
    url = (root / ".nebula-build/gallery/index.html").as_uri()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        names = page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.name)")
        assert names == [f"sprite-{n:05}" for n in range(120)]  # one page, not 3,001 cards
        assert page.inner_text("header .range") == "1–120 of 3,001"
        page.screenshot(path=str(tmp_path / "large.png"))

        page.fill("#filter", "sprite 2999 of")  # by prompt, on the last page
        assert page.eval_on_selector_all(".card", "c => c.map(e => e.dataset.name)") == [
            "sprite-02999"
        ]
        assert page.locator(".pager").first.is_hidden()  # one page of results
        page.fill("#filter", "zeb")
        page.wait_for_selector('[data-name="zebra"] .draw img')
        page.fill("#filter", "")
        assert page.locator(".card").count() == 120

        page.click('.chip[data-status="ok"]')  # only the up-to-date images
        assert page.eval_on_selector_all(".card", "c => c.map(e => e.dataset.name)") == [
            "sprite-00000",
            "zebra",
        ]
        page.click('.chip[data-status="ok"]')

        page.click("header .pager [data-turn='1']")
        assert page.locator(".card").first.get_attribute("data-name") == "sprite-00120"
        assert page.inner_text("header .range") == "121–240 of 3,001"
        page.keyboard.press("p")  # the first card of this page
        page.keyboard.press("p")  # past it: the previous page's last card
        assert page.locator(".card.focused").get_attribute("data-name") == "sprite-00119"
        assert page.inner_text("header .range") == "1–120 of 3,001"
        page.keyboard.press("n")
        assert page.locator(".card.focused").get_attribute("data-name") == "sprite-00120"

        page.reload()  # the page shown survives a reload (the live page reloads each round)
        assert page.locator(".card").first.get_attribute("data-name") == "sprite-00120"
        browser.close()
    shots = os.environ.get("NEBULA_BUILD_SCREENSHOTS")
    if shots:
        (Path(shots) / "large-gallery.png").write_bytes((tmp_path / "large.png").read_bytes())


def test_a_transparent_thumbnail_has_no_halo_on_the_checkerboard(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    with Image.open(root / ".nebula-build/gallery" / card(page, "potion")["thumb"]) as thumb:
        alphas = thumb.getchannel("A").histogram()
    assert sum(alphas[1:8]) == 0  # the downscale's ring of alpha 1-7, cleared as a resize's
    assert alphas[0] and sum(alphas[8:])
