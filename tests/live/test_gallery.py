"""The gallery page: static (`gallery`) and live (`watch --serve`) in a real browser."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nebula_build.text import printable
from tests.conftest import fake_manifest
from tests.live.pagedata import card as card_of
from tests.live.pagedata import page_cards

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 192

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
output = "img/hero.webp"

[images.logo]
model = "stabilityai/stable-diffusion-xl-base-1.0"
prompt = "a fox logo"
negative_prompt = "text, watermark"
width = 128
height = 128
output = "img/logo.png"

[images.card]
prompt = "a paper crane"
seed = 7
output = "img/card.jpg"
"""


def test_static_gallery_shows_every_image_with_its_metadata(project, run_cli, fake_site, tmp_path):
    root = project({"images.toml": SITE})
    assert run_cli("apply", "--target", "hero", "--target", "logo").code == 0
    code, out, _ = run_cli("gallery")
    assert code == 0 and "3 images" in out
    assert out.endswith(f"open {(root / '.nebula-build/gallery/index.html').as_uri()}\n")
    page = (root / ".nebula-build/gallery/index.html").read_text()
    hero, logo, crane = page_cards(page)
    assert hero["prompt"] == "a lighthouse at dusk" and hero["details"]["seed"] == "42"
    assert hero["details"]["size"] == "256 × 192"
    assert logo["negative_prompt"] == "text, watermark"
    assert logo["details"]["model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert logo["details"]["output"] == "img/logo.png"
    assert hero["status_text"] == "up to date" and hero["status"] == "ok"
    assert crane["status_text"] == "pending create: new image" and not crane["exists"]
    for card in (hero, logo):  # no larger than a thumbnail: shown as they are
        assert card["exists"] and card["thumb"] is None
        assert (root / ".nebula-build/gallery" / card["href"]).resolve().is_file()
    assert "http://" not in page and "https://" not in page  # offline: no CDN


def test_gallery_target_shows_only_that_image(project, run_cli, fake_site, tmp_path):
    root = project({"images.toml": SITE})
    code, out, err = run_cli("gallery", "--target", "logo")
    assert code == 0, err
    assert "(1 image)" in out
    page = (root / ".nebula-build/gallery/index.html").read_text()
    assert [card["name"] for card in page_cards(page)] == ["logo"]


def test_gallery_out_is_relative_to_the_C_folder(project, run_cli, tmp_path, monkeypatch):
    root = project({"images.toml": SITE})
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("-C", root.name, "gallery", "--out", "site-gallery")
    assert code == 0, err
    assert (root / "site-gallery/index.html").is_file()
    assert not (tmp_path / "site-gallery").exists()


def test_gallery_out_is_written_again_but_never_over_a_page_of_the_site(project, run_cli):
    root = project({"images.toml": SITE})
    site_page = root / "public" / "index.html"
    site_page.parent.mkdir()
    site_page.write_text("<!doctype html><title>My site</title>", encoding="utf-8")
    code, out, err = run_cli("gallery", "--out", "public")
    assert code == 1
    assert err == (
        "error: --out public: public/index.html is not a page nebula-build wrote; "
        "name another folder, or move that file away\n"
    )
    assert site_page.read_text(encoding="utf-8") == "<!doctype html><title>My site</title>"
    assert not (root / "public" / "draws").exists()
    site_page.unlink()
    site_page.symlink_to(root / "images.toml")  # a link is never taken for a gallery
    assert run_cli("gallery", "--out", "public").code == 1
    site_page.unlink()
    assert run_cli("gallery", "--out", "public").code == 0
    assert run_cli("gallery", "--out", "public").code == 0  # its own page: replaced
    earlier = site_page.read_text(encoding="utf-8").replace(
        '<meta name="generator" content="nebula-build gallery">\n', ""
    )
    site_page.write_text(earlier, encoding="utf-8")  # as versions before the mark wrote it
    assert run_cli("gallery", "--out", "public").code == 0


def test_gallery_out_through_a_link_out_of_the_project_is_refused(project, run_cli, tmp_path):
    """A pull request's `review -> /somewhere`: the link does not choose where the page
    and the draws go. Named outside the project, the folder is the user's own choice."""
    root = project({"images.toml": SITE})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "review").symlink_to(elsewhere)
    code, out, err = run_cli("gallery", "--out", "review")
    assert (code, out) == (1, "")
    assert err == (
        "error: --out review: a link leads out of the project there; name another folder "
        "(or the place the link leads to, if the gallery should go there)\n"
    )
    assert list(elsewhere.iterdir()) == []
    code, _, err = run_cli("gallery", "--out", str(elsewhere))
    assert code == 0, err
    assert (elsewhere / "index.html").is_file()
    (root / ".git").mkdir()
    (root / "rg").symlink_to(root / ".git")  # a link within the project, into git's folder
    for out in ("rg", ".git/pages"):
        code, _, err = run_cli("gallery", "--out", out)
        assert code == 1 and "that is in a version control folder (.git/)" in err, err
    assert list((root / ".git").iterdir()) == []


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        (
            "images.toml",
            "that is a file, not a folder; name the folder to write the gallery's index.html in",
        ),
        ("images.toml/sub", "cannot write the gallery there: Not a directory"),
        ("/proc/nebula-gallery", "cannot write the gallery there: No such file or directory"),
        ("a" * 300, "cannot write the gallery there: File name too long"),
        (
            "page-is-a-folder",
            "page-is-a-folder/index.html is not a page nebula-build wrote; name another "
            "folder, or move that file away",
        ),
    ],
)
def test_gallery_out_that_cannot_be_written_is_one_line(project, run_cli, out, reason):
    root = project({"images.toml": SITE})
    (root / "page-is-a-folder" / "index.html").mkdir(parents=True)
    code, _, err = run_cli("gallery", "--out", out)
    assert (code, err) == (1, f"error: --out {printable(out, limit=200)}: {reason}\n")


def test_failures_show_in_the_gallery(project, run_cli, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project(
        {"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}}, fail=("a",))}
    )
    assert run_cli("apply").code == 1
    run_cli("gallery", "--out", "site-gallery")
    page = (root / "site-gallery/index.html").read_text()
    assert card_of(page, "a")["status_text"] == "failed: a refused on purpose"


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    absent = []
    if not Path(path).exists():
        absent.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        absent.append("playwright (pip install -e '.[browser]')")
    if absent:
        missing = "the browser tests need " + " and ".join(absent)  # as the README says
        if os.environ.get("NEBULA_BUILD_REQUIRE_BROWSER"):
            pytest.fail(missing)
        pytest.skip(missing)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if text in response.read().decode():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never showed {text!r}")


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.browser
@pytest.mark.slow
def test_live_gallery_in_headless_chromium(project, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    root = project({"images.toml": SITE})
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
        _wait_for(url, "up to date")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(url)
            page.wait_for_function(
                "[...document.images].length === 3 && "
                "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
            text = page.inner_text("main")
            for expected in (
                "hero",
                "a lighthouse at dusk",
                "text, watermark",
                "42",
                "black-forest-labs/FLUX.1-schnell",
                "128 × 128",
                "img/card.jpg",
                "up to date",
            ):
                assert expected in text, expected
            page.screenshot(path=str(tmp_path / "gallery.png"), full_page=True)

            manifest = root / "images.toml"
            manifest.write_text(SITE.replace("a lighthouse at dusk", "a lighthouse in a storm"))
            assert page.locator(".card.changed").count() == 0  # the first build marks nothing
            page.wait_for_function(
                "document.querySelector('[data-name=hero]').innerText.includes('storm')",
                timeout=15000,
            )
            page.wait_for_selector('.card.changed[data-name="hero"]')
            page.wait_for_function(
                "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
            assert "a lighthouse in a storm" in page.inner_text('[data-name="hero"]')
            assert page.locator(".card.changed").count() == 1

            page.fill("#filter", "crane")
            assert page.locator(".card:visible").count() == 1
            page.screenshot(path=str(tmp_path / "gallery-after-edit.png"), full_page=True)
            browser.close()
        shots = os.environ.get("NEBULA_BUILD_SCREENSHOTS")
        if shots:
            for name in ("gallery.png", "gallery-after-edit.png"):
                shutil.copy(tmp_path / name, Path(shots) / name)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_serving_on_a_busy_port_is_one_clear_line(project, run_cli):
    project({"images.toml": SITE})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli("watch", "--once", "--serve", str(port))
    assert code == 1
    assert err.startswith(f"error: cannot serve the gallery on 127.0.0.1:{port}")


def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.slow
def test_the_live_gallery_serves_no_link_target_and_answers_no_foreign_host(project, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    root = project({"images.toml": SITE})
    (root / "img").mkdir()
    (root / "img/card.jpg").symlink_to(secret)  # an output apply refuses to overwrite
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
        _wait_for(url, "img/hero.webp")
        assert _get(f"{url}files/img/hero.webp")[0] == 200
        assert _get(f"{url}files/img/hero.webp", host=f"localhost:{port}")[0] == 200
        status, body = _get(f"{url}files/img/card.jpg")
        assert status == 404 and b"root:" not in body
        for host in (f"rebind.attacker.example:{port}", "rebind.attacker.example"):
            status, body = _get(f"{url}files/img/hero.webp", host=host)
            assert status == 403 and body == b"unknown host"
            assert _get(url, host=host)[0] == 403
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
