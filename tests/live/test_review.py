"""The gallery as the review tool: an image's candidates side by side, picked from
the live page (guarded POST /pick) or with the `pick` command the offline page shows."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from email.message import Message
from pathlib import Path

import pytest

from tests.conftest import REPO, fake_manifest
from tests.live.pagedata import card
from tests.live.test_gallery import BROWSER_ARGS, _chromium, _free_port, _wait_for

REVIEW = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 192

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
candidates = 3
metadata = false          # the output is then the draw's bytes as cached
output = "img/hero.png"

[images.logo]
model = "stabilityai/stable-diffusion-xl-base-1.0"
prompt = "a fox logo"
negative_prompt = "text, watermark"
width = 128
height = 128
candidates = 4
output = "img/logo.png"

[images.card]
prompt = "a paper crane"
seed = 7
output = "img/card.jpg"
"""


def _cached(root: Path, key: str) -> bytes:
    return (root / ".nebula-build/cache" / key[:2] / key).read_bytes()


def _draws(page: str, image: str) -> list[dict[str, object]]:
    return card(page, image)["draws"]


def _lock_params(root: Path, image: str) -> dict[str, object]:
    return tomllib.loads((root / "images.lock").read_text())["images"][image]["params"]


def test_offline_gallery_shows_each_candidate_with_its_pick_command(project, run_cli):
    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    code, out, err = run_cli("gallery")
    assert code == 0, err
    folder = root / ".nebula-build/gallery"
    page = (folder / "index.html").read_text()
    hero = _draws(page, "hero")
    assert len(hero) == 3 and len(_draws(page, "logo")) == 4
    for index, draw in enumerate(hero):
        assert draw["index"] == index
        assert draw["command"] == f"nebula-build pick hero {index}"
        assert draw["picked"] == (index == 2)
        key = draw["key"]
        assert re.fullmatch(r"[0-9a-f]{64}", key)
        assert draw["href"] == f"draws/{key}.png"
        assert (folder / draw["href"]).read_bytes() == _cached(root, key)  # byte for byte
    assert _draws(page, "card") == []
    assert "http://" not in page and "https://" not in page  # offline: nothing fetched
    assert '<p class="keys"' in page  # the keys are explained


def test_a_draw_the_cache_lacks_shows_as_not_made_yet(project, run_cli):
    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    key = _draws(page, "hero")[1]["key"]
    for path in (root / ".nebula-build/cache" / key[:2]).glob(f"{key}*"):
        path.unlink()
    assert run_cli("gallery").code == 0
    page = (root / ".nebula-build/gallery/index.html").read_text()
    missing = _draws(page, "hero")[1]
    assert missing["href"] is None and missing["key"] == key  # shown as not made yet
    copies = root / ".nebula-build/gallery/draws"
    assert not list(copies.glob(f"{key}*"))  # the copy the last page showed is gone
    assert len(list(copies.iterdir())) == 6


def test_the_offline_gallery_never_writes_through_a_linked_folder(project, run_cli, tmp_path):
    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "site").mkdir()
    (root / "site/draws").symlink_to(elsewhere)
    code, _, err = run_cli("gallery", "--out", "site")
    assert code == 1
    assert err.startswith("error: the gallery's ") and "site/draws is not a plain folder" in err
    assert len(err.strip().splitlines()) == 1
    assert list(elsewhere.iterdir()) == []


def _start_watch(root: Path) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, port


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=15)
    return err


def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _pick(port: int, fields: object, **headers: str) -> tuple[int, dict[str, object]]:
    sent = {"Content-Type": "application/json"} | {
        name.replace("_", "-"): value for name, value in headers.items()
    }
    status, _, body = _request(port, "POST", "/pick", json.dumps(fields).encode(), sent)
    answer = json.loads(body)
    assert set(answer) == {"ok", "message"} and "\n" not in answer["message"]
    assert "Traceback" not in answer["message"]
    return status, answer


@pytest.mark.slow
def test_the_pick_endpoint_takes_only_what_the_gallery_page_sends(project, run_cli):
    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    before = (root / "img/hero.png").read_bytes()
    process, port = _start_watch(root)
    try:
        _wait_for(f"http://127.0.0.1:{port}/", "up to date")
        status, headers, body = _request(port, "GET", "/")
        assert headers["X-Frame-Options"] == "DENY"  # no other page frames it
        page = body.decode()
        token = re.search(r'name="nebula-build-token" content="([^"]+)"', page).group(1)
        keys = [d["key"] for name in ("hero", "logo") for d in _draws(page, name) if d["href"]]
        assert len(keys) == 7
        status, headers, body = _request(port, "GET", f"/draws/{keys[1]}")
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert body == _cached(root, keys[1])
        foreign = "0" * 64
        for path in (f"/draws/{foreign}", "/draws/../images.lock", f"/draws/{keys[1]}x"):
            assert _request(port, "GET", path)[0] == 404, path

        good = {"image": "hero", "index": 2, "key": keys[2], "token": token}
        origin = f"http://127.0.0.1:{port}"
        refused = [
            (403, {**good, "token": "not-the-token"}, {}),
            (403, {**good, "token": token[:-1]}, {}),
            (403, {"image": "hero", "index": 2}, {}),
            (403, good, {"Host": f"rebind.attacker.example:{port}"}),
            (403, good, {"Origin": "http://attacker.example"}),
            (403, good, {"Origin": "null"}),
            (403, good, {"Origin": origin, "Sec_Fetch_Site": "cross-site"}),
            (403, good, {"Sec_Fetch_Site": "same-site"}),
            (415, good, {"Content_Type": "text/plain"}),
            (415, good, {"Content_Type": "application/x-www-form-urlencoded"}),
            (415, good, {"Content_Type": "multipart/form-data; boundary=x"}),
            (400, {**good, "image": "nowhere"}, {}),
            (400, {**good, "image": "card"}, {}),  # one draw: nothing to pick
            (400, {**good, "index": 3}, {}),
            (400, {**good, "index": -1}, {}),
            (400, {**good, "index": "2"}, {}),
            (400, {**good, "index": True}, {}),
            (400, {name: value for name, value in good.items() if name != "key"}, {}),
            (400, {**good, "key": keys[2].upper()}, {}),
            (400, [good], {}),
            (413, {**good, "padding": "x" * 5000}, {}),
        ]
        for expected, fields, headers in refused:
            status, answer = _pick(port, fields, **headers)
            assert (status, answer["ok"]) == (expected, False), (fields, headers, answer)
        status, answer = _pick(port, {**good, "image": "nowhere"})
        assert answer["message"] == "no image named 'nowhere' has candidates on this page"
        assert (root / "img/hero.png").read_bytes() == before
        assert "draw" not in _lock_params(root, "hero")

        status, answer = _pick(port, good, Origin=origin, Sec_Fetch_Site="same-origin")
        assert status == 200, answer
        assert answer == {
            "ok": True,
            "message": "hero: draw 2 (3 candidates) is the output (img/hero.png)",
        }
        assert _lock_params(root, "hero")["draw"] == 2
        assert (root / "img/hero.png").read_bytes() == _cached(root, keys[2])
        page = _request(port, "GET", "/")[2].decode()
        assert [d["index"] for d in _draws(page, "hero") if d["picked"]] == [2]
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_click_on_a_draw_the_manifest_no_longer_declares_picks_nothing(project, run_cli):
    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    process, port = _start_watch(root)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, "up to date")
        page = _request(port, "GET", "/")[2].decode()
        token = re.search(r'name="nebula-build-token" content="([^"]+)"', page).group(1)
        shown = _draws(page, "hero")[2]["key"]
        manifest = root / "images.toml"
        manifest.write_text(REVIEW.replace("a lighthouse at dusk", "a lighthouse at dawn"))
        _wait_for(url, "a lighthouse at dawn")  # the new draws are made; the page not reloaded
        before = (root / "img/hero.png").read_bytes()
        # the click on what the page showed: draw 2 of the dusk set
        status, answer = _pick(port, {"image": "hero", "index": 2, "key": shown, "token": token})
        assert (status, answer["ok"]) == (409, False), answer
        assert answer["message"] == (
            "hero: the page showed draws of what images.toml declared before it changed: "
            "pick again among the draws it shows now"
        )
        assert "draw" not in _lock_params(root, "hero")
        assert (root / "img/hero.png").read_bytes() == before
        page = _request(port, "GET", "/")[2].decode()
        now = _draws(page, "hero")[2]["key"]
        assert now != shown
        status, answer = _pick(port, {"image": "hero", "index": 2, "key": now, "token": token})
        assert status == 200, answer
        assert _lock_params(root, "hero")["draw"] == 2
        assert _lock_params(root, "hero")["prompt"] == "a lighthouse at dawn"
    finally:
        err = _stop(process)
    assert "Traceback" not in err


@pytest.mark.browser
@pytest.mark.slow
def test_clicking_a_candidate_in_the_live_gallery_picks_it(project, run_cli, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    root = project({"images.toml": REVIEW})
    process, port = _start_watch(root)
    url = f"http://127.0.0.1:{port}/"
    all_shown = "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
    try:
        _wait_for(url, "3 up to date")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 760})
            page.goto(url)
            page.wait_for_function(f"document.images.length === 8 && {all_shown}")
            hero = '[data-name="hero"]'
            assert page.locator(f"{hero} .draw").count() == 3
            assert page.locator(f'{hero} .draw.picked[data-index="0"]').count() == 1

            page.keyboard.press("n")  # the first image: hero
            page.keyboard.press("j")  # its next candidate, picked
            page.wait_for_selector(f'{hero} .draw.picked[data-index="1"]', timeout=15000)
            assert _lock_params(root, "hero")["draw"] == 1

            key = page.get_attribute(f'{hero} .draw[data-index="2"]', "data-key")
            page.click(f'{hero} .draw[data-index="2"] .choose')
            page.wait_for_selector(f'{hero} .draw.picked[data-index="2"]', timeout=15000)
            page.wait_for_function(all_shown)
            assert (root / "img/hero.png").read_bytes() == _cached(root, key)
            assert _lock_params(root, "hero")["draw"] == 2
            note = page.inner_text("#note")
            assert note == "hero: draw 2 (3 candidates) is the output (img/hero.png)"
            assert page.locator(".card.focused").get_attribute("data-name") == "hero"
            page.mouse.move(0, 0)
            page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            browser.close()
        if target := os.environ.get("NEBULA_BUILD_SCREENSHOT"):  # the README's picture
            shutil.copy(tmp_path / "review.png", REPO / target)  # relative: to the repository
    finally:
        err = _stop(process)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def test_a_pick_waits_for_the_round_in_progress_then_shows_on_the_page(
    project, fake_site, tmp_path
):
    from nebula_build.live.review import picker
    from tests.live.scripted import Script, make_watcher

    log = tmp_path / "gen.log"
    images = {
        "a": {"prompt": "one", "output": "a.png", "candidates": 3},
        "b": {"prompt": "two", "output": "b.png"},
    }
    root = project({"images.toml": fake_manifest(log, images, delay=0.6)})
    manifest = root / "images.toml"

    async def scenario() -> None:
        script, out = Script(), io.StringIO()
        watcher = make_watcher(root, script, out)
        task = asyncio.create_task(watcher.run(script.changes()))
        await script.next_round()
        images["b"]["prompt"] = "two, edited"
        manifest.write_text(fake_manifest(log, images, delay=0.6))
        await script.queue.put({manifest})
        await asyncio.sleep(0.2)  # b is generating
        pick = picker(watcher)
        key = tomllib.loads((root / "images.lock").read_text())["images"]["a"]["draws"][2]["key"]
        status, message = await asyncio.to_thread(pick, "a", 2, key)
        assert (status, message) == (200, "a: draw 2 (3 candidates) is the output (a.png)")
        assert [r.changed for r in script.rounds[1:]] == [["b"], ["a"]]  # after, not during
        assert script.rounds[-1].plan is not None
        assert _lock_params(root, "a")["draw"] == 2
        assert "round 3: picked a: draw 2 (3 candidates)" in out.getvalue()
        status, message = await asyncio.to_thread(pick, "nowhere", 0, key)
        assert status == 409 and "unknown image: nowhere (known: a, b)" in message
        task.cancel()

    asyncio.run(scenario())
    not_running = picker(make_watcher(root, Script(), io.StringIO()))
    assert not_running("a", 1, "0" * 64)[0] == 503


def _headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


@pytest.mark.parametrize(
    ("client", "headers", "status"),
    [
        ("192.168.1.20", {}, 403),  # served to the network: picks from this machine only
        ("::ffff:127.0.0.1", {}, 200),
        ("::1", {}, 200),
        ("127.0.0.1", {"Content_Length": None}, 411),
        ("127.0.0.1", {"Transfer_Encoding": "chunked"}, 411),
        ("127.0.0.1", {"Host": None}, 403),
    ],
)
def test_the_pick_guard(client, headers, status):
    from nebula_build.live.pickguard import PickRefused, check_pick

    body = json.dumps({"image": "hero", "index": 1, "key": "a" * 64, "token": "t0ken"}).encode()
    fields = {
        "Host": "127.0.0.1:8000",
        "Content_Type": "application/json; charset=utf-8",
        "Content_Length": str(len(body)),
    } | headers
    sent = _headers(**{name: value for name, value in fields.items() if value is not None})
    try:
        request = check_pick(
            "/pick",
            sent,
            io.BytesIO(body),
            client=client,
            token="t0ken",
            host_ok=lambda host: host == "127.0.0.1:8000",
        )
    except PickRefused as refused:
        assert refused.status == status, refused.message
    else:
        assert status == 200 and (request.image, request.index, request.key) == (
            "hero",
            1,
            "a" * 64,
        )


@pytest.mark.browser
def test_the_offline_page_gives_the_pick_command_of_a_clicked_or_stepped_candidate(
    project, run_cli
):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    assert run_cli("gallery").code == 0
    url = (root / ".nebula-build/gallery/index.html").as_uri()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        page.click('[data-name="hero"] .draw[data-index="2"] .choose')
        assert page.inner_text("#note").startswith("nebula-build pick hero 2: run it")
        assert page.evaluate("getSelection().toString()") == "nebula-build pick hero 2"
        page.keyboard.press("n")  # the next image: logo
        page.keyboard.press("k")  # from its picked draw 0 back to its last, 3
        assert page.inner_text("#note").startswith("nebula-build pick logo 3: run it")
        assert page.locator(".card.focused").get_attribute("data-name") == "logo"
        browser.close()
    assert "draw" not in _lock_params(root, "hero")  # offline: nothing picked


@pytest.mark.browser
def test_each_draw_shows_the_seed_it_was_made_with(project, run_cli):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    root = project({"images.toml": REVIEW})
    assert run_cli("apply").code == 0
    assert run_cli("pick", "hero", "2").code == 0
    assert run_cli("gallery").code == 0
    lock = tomllib.loads((root / "images.lock").read_text())["images"]["hero"]
    picked_seed = lock["params"]["seed"]
    assert picked_seed != 42  # draw 2's seed is derived from the declared one
    url = (root / ".nebula-build/gallery/index.html").as_uri()
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        hero = '[data-name="hero"]'
        captions = page.locator(f"{hero} .draw figcaption").all_inner_texts()
        # the card said "seed 42"... for draw 2; no draw said which seed it was made with
        assert "seed 42" in captions[0] and f"seed {picked_seed}" in captions[2]
        assert page.inner_text(f"{hero} dl").count(f"{picked_seed} (draw 2)") == 1
        logo = page.locator('[data-name="logo"] .draw figcaption').all_inner_texts()
        assert not any("seed" in caption for caption in logo)  # no seed declared: none shown
        browser.close()


def test_watch_with_another_backend_does_not_pick(project, fake_site, tmp_path):
    from nebula_build.engine.round import RoundOptions
    from nebula_build.errors import UserError
    from nebula_build.live.watch import Watcher
    from nebula_build.plugin.manager import load_registry
    from nebula_build.state.project import Project
    from nebula_build.ui.style import Style

    images = {"a": {"prompt": "one", "output": "a.png", "candidates": 2}}
    root = project({"images.toml": fake_manifest(tmp_path / "gen.log", images)})
    project_ = Project(root, root / "images.toml")
    watcher = Watcher(
        project_,
        load_registry(),
        out=io.StringIO(),
        style=Style(False),
        options=RoundOptions(backend="preview"),
    )
    with pytest.raises(UserError, match="run watch without --backend to pick"):
        asyncio.run(watcher.pick("a", 1))
