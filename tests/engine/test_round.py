"""One apply round: `apply` and `watch --once` stop, fail and succeed alike."""

from __future__ import annotations

import pytest

from tests.conftest import fake_manifest, generation_log, nebula_manifest

COMMANDS = [["apply"], ["watch", "--once"]]
IDS = ["apply", "watch --once"]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_broken_manifest_exits_1_before_any_work(command, project, run_cli, fake_site, tmp_path):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"a": {"prompt": "x"}}) + "[images.b\n"})
    code, _, err = run_cli(*command)
    assert code == 1
    assert "images.toml" in err and "invalid TOML" in err and "Traceback" not in err
    assert generation_log(log) == [] and not (root / "images.lock").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_missing_key_stops_before_any_work(command, project, run_cli, nebula_server, monkeypatch):
    monkeypatch.delenv("NEBULA_API_KEY")
    images = {"a": {"prompt": "one", "output": "a.png"}, "b": {"prompt": "two", "output": "b.png"}}
    root = project({"images.toml": nebula_manifest(images)})
    code, out, err = run_cli(*command)
    assert code == 1
    assert "NEBULA_API_KEY is not set" in err and err.count("NEBULA_API_KEY is not set") == 1
    assert nebula_server.requests == []
    assert not (root / "a.png").exists() and not (root / "images.lock").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_failed_image_exits_1_and_the_others_are_kept(
    command, project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    images = {
        "good": {"prompt": "one", "output": "good.png"},
        "bad": {"prompt": "two", "output": "bad.png"},
    }
    root = project({"images.toml": fake_manifest(log, images, fail=("bad",))})
    code, _, err = run_cli(*command)
    assert code == 1
    assert "1 image failed" in err and "bad: bad refused on purpose" in err
    assert (root / "good.png").exists() and not (root / "bad.png").exists()
    assert "good" in (root / "images.lock").read_text()


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_clean_round_exits_0_and_the_next_is_a_no_op(
    command, project, run_cli, fake_site, tmp_path
):
    log = tmp_path / "log"
    root = project({"images.toml": fake_manifest(log, {"a": {"prompt": "x", "output": "a.png"}})})
    assert run_cli(*command).code == 0
    assert run_cli(*command).code == 0
    assert generation_log(log) == ["a"]
    assert (root / "a.png").exists()
