"""The live gallery says a round's error (a broken manifest) above the cards, which stay
as the last good round left them, until a round succeeds again."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.live.pagedata import page_cards
from tests.live.test_gallery import BROWSER_ARGS, _chromium

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 192

[images.hero]
prompt = "a lighthouse at dusk"
output = "img/hero.webp"

[images.logo]
prompt = "a fox logo"
output = "img/logo.png"
"""

#: the banner's element (its class is in the page's style either way)
BANNER = 'id="round-error"'

#: the indicator beside the title, while the latest round went well
LIVE_DOT = '<span class="live-dot" title="watch is running">● live</span>'

#: an unknown key whose name is markup: the page shows it as text
MARKUP_KEY = '"<img src=x onerror=alert(1)>" = 1\n'

#: six problems: the page shows the first few lines and counts the rest
SIX_PROBLEMS = "".join(f'\n[images.bad{n}]\nprompt = "x"\nbogus = 1\n' for n in range(3))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _wait_for_page(url: str, wanted: str, *, absent: str = "", timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    page = ""
    while time.monotonic() < deadline:
        try:
            page = _page(url)
        except OSError:
            page = ""
        if wanted in page and not (absent and absent in page):
            return page
        time.sleep(0.1)
    raise AssertionError(f"{url} never showed {wanted!r}: {page[-2000:]}")


@contextmanager
def _serving(root: Path) -> Iterator[tuple[str, list[str]]]:
    """`watch --serve` on `root`: its page's address, and its output once stopped."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said: list[str] = []
    try:
        yield f"http://127.0.0.1:{port}/", said
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        said.extend([out, err])
    assert process.returncode == 0, err
    assert "Traceback" not in err


def _banner(page: str) -> str:
    start = page.index('<section id="round-error"')
    return page[start : page.index("</section>", start)]


@pytest.mark.slow
def test_a_broken_manifest_shows_its_error_above_the_cards_until_fixed(project):
    root = project({"images.toml": SITE})
    manifest = root / "images.toml"
    with _serving(root) as (url, said):
        good = _wait_for_page(url, "up to date")
        assert BANNER not in good and LIVE_DOT in good
        assert len(page_cards(good)) == 2

        manifest.write_text(SITE + "[images.broken\n")
        broken = _wait_for_page(url, BANNER)
        banner = _banner(broken)
        assert "round 2: error" in banner
        assert "images.toml:15:15:" in banner and "invalid TOML" in banner
        assert "the cards show the files as round 1 left them" in banner
        assert [c["name"] for c in page_cards(broken)] == ["hero", "logo"]
        assert all(c["status"] == "ok" for c in page_cards(broken))
        assert 'data-round="2"' in broken  # a new round: an open page reloads
        assert LIVE_DOT not in broken
        assert '<span class="live-dot failed"' in broken and "● round 2 failed</span>" in broken

        manifest.write_text(SITE.replace("[images.logo]\n", "[images.logo]\n" + MARKUP_KEY))
        escaped = _wait_for_page(url, "round 3: error")
        banner = _banner(escaped)
        assert "<img" not in banner
        assert "images.logo.&lt;img src=x onerror=alert(1)&gt;: unknown key" in banner
        assert "the cards show the files as round 1 left them" in banner

        manifest.write_text(SITE.replace("a fox logo", "a fox logo, flat") + SIX_PROBLEMS)
        many = _banner(_wait_for_page(url, "round 4: error"))
        assert many.count("<li>") == 5
        assert "… and 1 more line: see the terminal running watch" in many

        manifest.write_text(SITE.replace("a fox logo", "a fox logo, flat"))
        fixed = _wait_for_page(url, "a fox logo, flat", absent=BANNER)
        assert 'data-round="5"' in fixed
        assert LIVE_DOT in fixed and "live-dot failed" not in fixed
        assert [c["status"] for c in page_cards(fixed)] == ["ok", "ok"]
    assert "round 2: error: images.toml:15:15:" in said[0]


@pytest.mark.slow
def test_a_manifest_broken_from_the_start_shows_its_error_and_no_cards(project):
    root = project({"images.toml": SITE + "[images.broken\n"})
    with _serving(root) as (url, _):
        broken = _wait_for_page(url, BANNER)
        banner = _banner(broken)
        assert "round 1: error" in banner and "invalid TOML" in banner
        assert "no round has built the images yet" in banner
        assert page_cards(broken) == []

        (root / "images.toml").write_text(SITE)
        fixed = _wait_for_page(url, "up to date", absent=BANNER)
        assert len(page_cards(fixed)) == 2


@pytest.mark.browser
@pytest.mark.slow
def test_an_open_page_shows_the_error_then_the_fixed_round_in_chromium(project, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    root = project({"images.toml": SITE + "[images.broken\n"})
    with _serving(root) as (url, _), sync_playwright() as driver:
        _wait_for_page(url, BANNER)
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        assert "invalid TOML" in page.inner_text("#round-error")
        assert page.locator(".empty").count() == 0  # not "No images declared."
        assert page.inner_text(".live-dot") == "● round 1 failed"
        assert _color(page, ".live-dot") == _color(page, ".round-error b")  # red, not green
        page.screenshot(path=str(tmp_path / "broken.png"))

        (root / "images.toml").write_text(SITE)
        page.wait_for_function("document.querySelectorAll('.card').length === 2", timeout=20000)
        assert page.locator("#round-error").count() == 0
        assert page.inner_text(".live-dot") == "● live"
        assert _color(page, ".live-dot") == _color(page, ".status.ok")
        page.screenshot(path=str(tmp_path / "fixed.png"))
        browser.close()


def _color(page: Any, selector: str) -> str:
    return str(page.eval_on_selector(selector, "e => getComputedStyle(e).color"))
