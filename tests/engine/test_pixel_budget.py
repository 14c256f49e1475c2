"""Encodes share a budget of pixels: one of the largest outputs is encoded alone.
Eight 8192² sprites with `pad` and `extrude`, encoded at once, took 8 GB."""

from __future__ import annotations

import threading
import time

import pytest

from nebula_build.engine.apply import Applier

SPRITES = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 256
height = 256

[images.s]
prompt = "a sprite {n}"
matrix = { n = ["1", "2", "3", "4", "5", "6"] }
resize = [128, 128]
pad = 4
output = "sprites/s{n}.png"
"""


def _most_at_once(run_cli, monkeypatch) -> int:
    """The most encodes (`Applier._persist`) that ran at the same time in an apply."""
    persist = Applier._persist
    lock, running, most = threading.Lock(), [0], [0]

    def counted(self, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)  # long enough for the others to start, if they may
            return persist(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(Applier, "_persist", counted)
    assert run_cli("apply").code == 0
    return most[0]


@pytest.mark.parametrize(("budget", "alone"), [(256 * 256, True), (256 * 256 * 8, False)])
def test_encodes_take_their_pixels_from_one_budget(project, run_cli, monkeypatch, budget, alone):
    """Each encode here holds 256² pixels at most: a budget of that many takes them one
    at a time, one eight times larger lets several run together."""
    project({"images.toml": SPRITES})
    monkeypatch.setattr("nebula_build.engine.pixelbudget.PIXELS_IN_FLIGHT", budget)
    most = _most_at_once(run_cli, monkeypatch)
    assert most == 1 if alone else most > 1, most
