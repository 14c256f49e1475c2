"""`watch --max-generations N` and `--max-cost AMOUNT`: a save that would pay for more
(a matrix widened by mistake, a model with no known price) is a round refused before
any request, said once, and watch waits for the next save. Before, watch had no cap:
every save was generated, whatever it cost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.cli.test_costs import FLUX, PRICED
from tests.conftest import fake_manifest, generation_log, nebula_manifest
from tests.live.pagedata import page_cards
from tests.live.test_gallery import _free_port, _get, _wait_for
from tests.live.test_watch_hand_edits import _until
from tests.live.watching import watching

CAP = ("--max-generations", "1")
TWO = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
REFUSED = (
    "round 1: error: this round would generate 2 images, more than --max-generations 1; "
    "nothing was generated\n"
)


def test_a_round_over_max_generations_waits_for_the_next_save(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, TWO)})
    manifest = root / "images.toml"
    with watching(root, flags=("--max-generations", "1")) as run:
        _until(lambda: run.printed("waiting for the next save"), "the refusal")
        assert REFUSED in run.out, run.out
        assert not (root / "a.png").exists() and generation_log(log) == []
        time.sleep(1.5)  # the manifest is watched within a second of the round
        manifest.write_text(fake_manifest(log, {"a": TWO["a"]}))
        _until((root / "a.png").exists, "a made by the next save's round")
        _until(lambda: run.printed("round 2:"), "round 2")
    assert run.returncode == 0, run.err
    assert generation_log(log) == ["a"]
    assert "Traceback" not in run.err


def test_watch_max_cost_refuses_a_round_over_it(project, run_cli, nebula_server):
    root = project({"images.toml": nebula_manifest(TWO, **PRICED)})
    nebula_server.prices[FLUX] = 0.003
    with watching(root, flags=("--max-cost", "0.005")) as run:
        _until(lambda: run.printed("waiting for the next save"), "the refusal")
    assert (
        "round 1: error: this round would cost an estimated $0.006 (2 paid generations), "
        "more than --max-cost $0.005; nothing was generated\n"
    ) in run.out, run.out
    assert nebula_server.generations == [] and not (root / "a.png").exists()
    assert run.returncode == 0, run.err


def test_watch_once_over_a_cap_fails_as_apply_does(project, run_cli, fake_site, tmp_path):
    root = project({"images.toml": fake_manifest(tmp_path / "gen.log", TWO)})
    code, _, err = run_cli("watch", "--once", "--max-generations", "1")
    assert code == 1
    assert err.splitlines() == [
        "error: this apply would generate 2 images, more than --max-generations 1; "
        "nothing was generated"
    ]
    assert not (root / "a.png").exists()


def test_the_live_gallery_shows_what_a_refused_round_would_have_made(project, fake_site, tmp_path):
    """A round refused by --max-generations left the page on the last good round: the
    images the save added were not on it, while `status` counted them pending."""
    log = tmp_path / "gen.log"
    root = project({"images.toml": fake_manifest(log, {"a": TWO["a"]})})
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(
        [sys.executable, "-m", "nebula_build", "watch", "--serve", str(port), *CAP],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(url, "up to date")
        time.sleep(1.5)  # the manifest is watched within a second of the round
        more = {**TWO, "c": {"prompt": "three", "output": "c.png"}}
        (root / "images.toml").write_text(fake_manifest(log, more))
        _wait_for(url, "more than --max-generations 1")
        page = _get(url)[1].decode()
        cards = {c["name"]: c["status"] for c in page_cards(page)}
        assert cards == {"a": "ok", "b": "pending", "c": "pending"}, json.dumps(cards)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert "Traceback" not in err
    assert generation_log(log) == ["a"]
