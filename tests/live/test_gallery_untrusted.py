"""The gallery meets files it did not make: outputs a pull request replaced, odd
entries and planted files in its thumbnail folder, a file changed while it reads it.
None of them may run a decoder beyond PNG/JPEG/WebP/AVIF, crash the command or the
live server, or show a picture that is not the output."""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from nebula_build.live import thumblinks
from nebula_build.state.guard import Guard
from tests.live.pagedata import card, page_cards
from tests.live.test_gallery import BROWSER_ARGS, _chromium, _wait_for
from tests.live.test_gallery_scale import LARGE, _thumbs
from tests.live.test_review import _request, _start_watch, _stop

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 512 384\nnewpath 0 0 moveto showpage\n"
PAGE = ".nebula-build/gallery/index.html"


def _page(root: Path) -> str:
    return (root / PAGE).read_text()


def _replace_output(root: Path, name: str, data: bytes) -> None:
    """Put `data` in place of an output, with the lock's digest edited to match (what a
    pull request can do): the plan then finds the image up to date."""
    output = root / f"img/{name}.png"
    old = hashlib.sha256(output.read_bytes()).hexdigest()
    output.write_bytes(data)
    lock = root / "images.lock"
    lock.write_text(lock.read_text().replace(old, hashlib.sha256(data).hexdigest()))


def _tiny_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (8192, 8192)).save(buffer, "PNG")  # a few KB, 64 megapixels decoded
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["eps", "bomb"])
def test_an_output_that_is_not_what_nebula_build_wrote_is_never_decoded(
    project, run_cli, tmp_path, monkeypatch, kind
):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    ran = tmp_path / "gs-ran"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gs").write_text(f'#!/bin/sh\necho "$@" >> {ran}\nexit 1\n')
    (fake / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    _replace_output(root, "hero", EPS if kind == "eps" else _tiny_bomb())
    started = time.monotonic()
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert not ran.exists()  # Ghostscript never ran on the pull request's PostScript
    assert "1 image could not be read" in out
    assert card(_page(root), "hero")["thumb"] is None and card(_page(root), "potion")["thumb"]
    assert time.monotonic() - started < 1.5  # the bomb's header alone refused it


def _names(root: Path) -> dict[str, str]:
    """The thumbnail file each card shows, by image name."""
    page = _page(root)
    return {
        name: (card(page, name)["thumb"] or "/").rsplit("/", 1)[1] for name in ("hero", "potion")
    }


def test_a_thumbnail_folder_that_is_a_file_is_one_line_to_remove(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    (root / ".nebula-build/thumbs").write_text("not a folder")
    code, _, err = run_cli("gallery")
    assert code == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "remove .nebula-build/thumbs" in err


def test_folders_among_the_thumbnails_are_neither_shown_nor_removed(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    names = _names(root)
    folder = root / ".nebula-build/thumbs"
    (folder / names["hero"]).unlink()
    (folder / names["hero"]).mkdir()  # named like the current thumbnail
    stale = folder / ("0" * 64 + ".webp")
    stale.mkdir()  # named like one no image shows: prune would remove it
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert card(_page(root), "hero")["thumb"] is None  # not the folder
    assert "1 image could not be read" in out
    assert stale.is_dir() and (folder / names["hero"]).is_dir()


def test_a_planted_thumbnail_is_never_shown(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    digest = hashlib.sha256((root / "img/hero.png").read_bytes()).hexdigest()
    folder = root / ".nebula-build/thumbs"
    folder.mkdir(parents=True)
    for name in (f"{digest}.webp", hashlib.sha256(digest.encode()).hexdigest() + ".webp"):
        Image.new("RGB", (256, 192), (255, 0, 0)).save(folder / name, "WEBP")
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert "made 2 thumbnails" in out
    shown = root / ".nebula-build/gallery" / card(_page(root), "hero")["thumb"]
    with Image.open(shown) as thumb, Image.open(root / "img/hero.png") as full:
        assert thumb.convert("RGB").getpixel((128, 96)) != (255, 0, 0)
        assert full.resize((256, 192)).convert("RGB").getpixel((0, 0)) == pytest.approx(
            thumb.convert("RGB").getpixel((0, 0)), abs=40
        )


def test_an_output_changed_while_the_gallery_reads_it_is_not_filed_under_the_old_digest(
    project, run_cli, monkeypatch
):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    real = thumblinks.thumbnail_links

    races = [True]

    def racing(plan, project, *args, **kwargs):  # saved over after the plan, before the read
        if races.pop():
            Image.new("RGB", (512, 384), (255, 0, 0)).save(root / "img/hero.png")
        return real(plan, project, *args, **kwargs)

    monkeypatch.setattr(thumblinks, "thumbnail_links", racing)
    code, out, err = run_cli("gallery")
    assert code == 0, err
    assert card(_page(root), "hero")["thumb"] is None  # the lock's digest is not these bytes
    races.append(False)
    code, out, err = run_cli("gallery")
    assert code == 0, err
    shown = root / ".nebula-build/gallery" / card(_page(root), "hero")["thumb"]
    with Image.open(shown) as thumb:  # the file as it is now (a pending image)
        assert thumb.convert("RGB").getpixel((128, 96)) == pytest.approx((255, 0, 0), abs=8)


def test_a_pending_images_output_is_read_only_when_its_stat_changed(project, run_cli, monkeypatch):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(LARGE.replace("at dusk", "at dawn"))  # hero: pending
    assert run_cli("gallery").code == 0
    assert card(_page(root), "hero")["thumb"]
    read: list[str] = []
    real = Guard.read

    def counting(self, relative, **kwargs):
        read.append(relative)
        return real(self, relative, **kwargs)

    monkeypatch.setattr(Guard, "read", counting)
    code, _, err = run_cli("gallery")
    assert code == 0, err
    assert card(_page(root), "hero")["thumb"]
    assert "img/hero.png" not in read  # the file index knew its digest from its stat


def test_gc_removes_the_thumbnails_of_outputs_the_lock_no_longer_records(project, run_cli):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    before = _names(root)
    (root / "images.toml").write_text(LARGE.replace("at dusk", "at dawn"))
    assert run_cli("apply").code == 0
    assert run_cli("gallery", "--target", "hero").code == 0  # prunes nothing
    assert len(_thumbs(root)) == 3
    hero = card(_page(root), "hero")["thumb"].rsplit("/", 1)[1]
    odd = root / ".nebula-build/thumbs" / ("1" * 64 + ".webp")
    odd.mkdir()
    code, _, err = run_cli("gc")
    assert code == 0, err
    assert set(_thumbs(root)) == {hero, before["potion"], odd.name}
    assert before["hero"] not in _thumbs(root)


def _edit_until_shown(root: Path, url: str, words: str) -> None:
    """Edit hero's prompt until the live page shows it: on a loaded machine an edit
    right after the first round can come before watch watches the files."""
    for attempt in range(6):
        (root / "images.toml").write_text(LARGE.replace("at dusk", f"{words} {attempt}"))
        try:
            _wait_for(url, f"{words} {attempt}", timeout=10)
        except AssertionError:
            continue
        return
    raise AssertionError(f"{url} never showed {words!r}")


def test_the_live_gallery_prunes_what_it_no_longer_shows_and_survives_a_linked_folder(
    project, run_cli, tmp_path
):
    root = project({"images.toml": LARGE})
    assert run_cli("apply").code == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    process, port = _start_watch(root)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, "at dusk", timeout=60)
        first = card(_request(port, "GET", "/")[2].decode(), "hero")["thumb"]
        assert (root / ".nebula-build/thumbs" / first.rsplit("/", 1)[1]).is_file()
        _edit_until_shown(root, url, "at dawn")
        second = card(_request(port, "GET", "/")[2].decode(), "hero")["thumb"]
        assert second and second != first
        assert set(_thumbs(root)) == {
            second.rsplit("/", 1)[1],
            card(_request(port, "GET", "/")[2].decode(), "potion")["thumb"].rsplit("/", 1)[1],
        }  # the first round's hero is gone

        folder = root / ".nebula-build/thumbs"
        for entry in folder.iterdir():
            entry.unlink()
        folder.rmdir()
        folder.symlink_to(outside)  # mid-watch: a thumbnail problem, never the watch's end
        _edit_until_shown(root, url, "at night")
        assert process.poll() is None
        assert list(outside.iterdir()) == []  # nothing written through the link
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.browser
def test_image_addresses_follow_the_hash_and_file_names_with_url_characters(project, run_cli):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    parts = [
        'version = 1\n[defaults]\nbackend = "preview"\n'
        'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n'
    ]
    for n in range(300):
        parts.append(f'\n[images.s{n:03}]\nprompt = "sprite {n}"\noutput = "out/s{n:03}.png"\n')
    parts.append('\n[images.odd]\nprompt = "odd name"\noutput = "out/a#b%c.png"\n')
    root = project({"images.toml": "".join(parts)})
    assert run_cli("apply", "--target", "odd", "--target", "s000").code == 0
    assert run_cli("gallery").code == 0
    odd = card(_page(root), "odd")
    assert re.fullmatch(r"\.\./\.\./out/a%23b%25c\.png", odd["href"])
    assert len(page_cards(_page(root))) == 301
    url = (root / PAGE).as_uri()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url + "#image-%E0")  # a malformed escape: ignored
        page.wait_for_selector(".card")
        assert page.locator(".card").first.get_attribute("data-name") == "s000"
        page.evaluate("location.hash = 'image-s250'")  # a later hash change, on page 3
        page.wait_for_selector("#image-s250")
        page.evaluate("location.hash = 'image-odd'")
        page.wait_for_selector("#image-odd")
        shown = page.eval_on_selector("#image-odd a.thumb", "a => a.href")
        natural = page.eval_on_selector(
            "#image-odd img", "i => i.decode().then(() => i.naturalWidth)"
        )
        assert natural == 64 and shown.endswith("/out/a%23b%25c.png")
        browser.close()
    assert errors == []
