"""`watch --max-generations N` and `--max-cost AMOUNT`: a save that would pay for more
(a matrix widened by mistake, a model with no known price) is a round refused before
any request, said once, and watch waits for the next save. Before, watch had no cap:
every save was generated, whatever it cost."""

from __future__ import annotations

import time

from tests.cli.test_costs import FLUX, PRICED
from tests.conftest import fake_manifest, generation_log, nebula_manifest
from tests.live.test_watch_hand_edits import _until
from tests.live.watching import watching

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
