"""The live page keeps up with watch across a lost event stream: a watch stopped and
started again on the same port, or a proxy's error in between, in headless Chromium."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nebula_build.live.gallery import render
from nebula_build.live.galleryserver import GalleryServer
from tests.live.test_gallery import BROWSER_ARGS, SITE, _chromium, _free_port, _wait_for
from tests.live.test_review import _stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@contextlib.contextmanager
def _browser_page(url: str) -> Iterator[Any]:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            yield page
        finally:
            browser.close()


def _watch_on(root: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_watch_started_again_on_the_same_port_shows_its_first_round(project):
    root = project({"images.toml": SITE})
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    first = _watch_on(root, port)
    try:
        _wait_for(url, "up to date")
        with _browser_page(url) as page:
            page.wait_for_selector("text=a lighthouse at dusk")
            assert page.locator(".live-dot").is_visible()
            err = _stop(first)
            page.wait_for_selector(".reconnecting-dot", state="visible", timeout=15000)
            assert not page.locator(".live-dot").is_visible()
            # its round 1 is no later than the page's, but of another run
            (root / "images.toml").write_text(SITE.replace("at dusk", "in a storm"))
            second = _watch_on(root, port)
            try:
                page.wait_for_selector("text=a lighthouse in a storm", timeout=30000)
                page.wait_for_selector(".live-dot", state="visible")
                assert not page.locator(".reconnecting-dot").is_visible()
            finally:
                err += _stop(second)
    finally:
        if first.returncode is None:
            err = _stop(first)
    assert "Traceback" not in err


class _BadGateway(BaseHTTPRequestHandler):
    """A proxy whose upstream is down: every request answered 502."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def _bad_gateway(port: int) -> Iterator[list[str]]:
    asked: ClassVar[list[str]] = []
    handler = type("Handler", (_BadGateway,), {"asked": asked})
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as proxy:
        thread = threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield asked
        finally:
            proxy.shutdown()


def _serve(server: GalleryServer, title: str, round_number: int) -> None:
    page = render([], title=title, live=True, round_number=round_number, run=server.run)
    server.publish(page, [], round_number, [], read=lambda _: b"")


def test_an_event_stream_answered_502_is_opened_again_and_shows_the_round(project):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    with contextlib.ExitStack() as running:
        first = running.enter_context(GalleryServer(port=port))
        # a page opened while watch builds its first round becomes that round's page
        with _browser_page(url) as page:
            assert page.inner_text("body") == "Building…"
            _serve(first, "before the proxy", 1)
            page.wait_for_function("document.title === 'before the proxy'")
            running.close()  # watch stopped
            with _bad_gateway(port) as asked:
                page.wait_for_selector(".reconnecting-dot", state="visible", timeout=15000)
                assert "/events" in asked
            with GalleryServer(port=port) as second:
                _serve(second, "after the proxy", 2)
                page.wait_for_function("document.title === 'after the proxy'", timeout=20000)
                page.wait_for_selector(".live-dot", state="visible")
