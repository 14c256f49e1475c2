"""Watch and the files it wrote: one deleted is restored, one edited by hand is a
conflict shown on the page and said once, never overwritten; its own writes start
no round."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from tests.live.test_gallery import _free_port

SITE = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 128
height = 128

[images.hero]
prompt = "a lighthouse at dusk"
seed = 42
output = "images/hero.png"

[images.banner]
prompt = "a long banner"
output = "images/banner.jpg"
"""


def _page(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def _until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def _chips(url: str) -> list[str]:
    """The page's summary: '2 up to date', '1 conflict'…"""
    return re.findall(r'class="chip \w+"[^>]*>([^<]+)<', _page(url))


@pytest.mark.slow
def test_watch_restores_a_deleted_output_and_shows_a_hand_edit_once(project):
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
    banner, hero = root / "images/banner.jpg", root / "images/hero.png"
    try:
        _until(lambda: _chips(url) == ["2 up to date"], "the first round")
        time.sleep(1.5)  # the output folder is watched within a second of the round
        banner.unlink()
        _until(banner.exists, "banner.jpg restored")
        _until(lambda: _chips(url) == ["2 up to date"], "the page after the restore")

        edited = hero.read_bytes() + b"x"
        hero.write_bytes(edited)
        _until(lambda: _chips(url) == ["1 up to date", "1 conflict"], "the conflict shown")
        assert "output file changed by hand" in _page(url)

        long_banner = banner.read_bytes()
        (root / "images.toml").write_text(SITE.replace("a long banner", "a wide banner"))
        _until(lambda: "a wide banner" in _page(url), "the edit round")
        _until(lambda: banner.read_bytes() != long_banner, "the edit round's banner")
        time.sleep(1.5)  # time for a round its own writes would start, if they did
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert hero.read_bytes() == edited  # never overwritten
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2", "round 3", "round 4"]
    assert "restored banner images/banner.jpg" in out
    assert rounds[1].startswith("round 2: 1 done (0 generated)")  # from the cache
    said = [line for line in out.splitlines() if line.startswith("conflict:")]
    assert said == [
        "conflict: hero: images/hero.png: output file changed by hand: kept, not overwritten; "
        "delete it to have it made again, or restart watch with --force to replace it "
        "(a copy goes to .nebula-build/backup/); or stop watch and keep it as the output: "
        "nebula-build accept hero"
    ]
    assert re.fullmatch(r"round 3: 0 done \(0 generated\), 1 in conflict in [\d.]+s", rounds[2])
    assert "failed" not in out
