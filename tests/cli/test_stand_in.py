"""The dry run of the paid path (docs/ci.md): the loopback stand-in for the API makes
placeholders under the real images' keys. They never reach the remote cache, and a
real run never takes one for the image it stands for."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest

from nebula_build.engine import noop
from tests.conftest import nebula_manifest

IMAGES = {
    "hero": {"prompt": "a lighthouse at dusk", "output": "img/hero.png", "seed": 1},
    "logo": {"prompt": "a red fox", "output": "img/logo.webp", "seed": 2},
    "tile": {"prompt": "moss", "output": "img/tile.png", "seed": 3},
}
REASON = "a placeholder the stand-in for the API made, not the real image"
UPLOAD_NOTE = (
    "note: 3 placeholders not uploaded: made by the stand-in for the API (a dry run), they "
    "would be taken for the real images: they stay in the local cache only"
)


@pytest.fixture
def shared(tmp_path, monkeypatch) -> Path:
    """A remote cache every job can write to, as the GitHub example sets it."""
    folder = tmp_path / "shared"
    monkeypatch.setenv("NEBULA_BUILD_CACHE_REMOTE", folder.as_uri())
    return folder


@pytest.fixture
def stand_in(nebula_server):
    """The stand-in as `python -m nebula_build.testing` serves it: its answers marked."""
    nebula_server.marks_placeholders = True
    return nebula_server


def _checkout(tmp_path: Path, name: str, source: Path | None = None) -> Path:
    root = tmp_path / name
    root.mkdir()
    if source is None:
        (root / "images.toml").write_text(nebula_manifest(IMAGES))
    else:
        for file in ("images.toml", "images.lock"):
            shutil.copy(source / file, root / file)
    return root


def _records(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json")) if folder.exists() else []


def _real_api(server, monkeypatch) -> None:
    """From now on, a run against the real API: no stand-in can answer it."""
    monkeypatch.setattr(
        "nebula_build.backends.nebula.may_be_stand_in", lambda: False, raising=False
    )
    server.marks_placeholders = False
    server.reset_counters()


def _made_with(root: Path) -> dict[str, object]:
    lock = tomllib.loads((root / "images.lock").read_text())
    return {name: entry.get("made_with", {}) for name, entry in lock["images"].items()}


def test_a_dry_run_uploads_no_placeholder_to_the_remote_cache(tmp_path, run_cli, stand_in, shared):
    first = _checkout(tmp_path, "first")
    code, out, err = run_cli("apply", "--yes", "--max-generations", "50", cwd=first)
    assert code == 0, err
    assert len(stand_in.generations) == 3
    assert _records(shared) == []
    assert err.count("not uploaded") == 1 and UPLOAD_NOTE in err
    assert _made_with(first) == {key: {"server": "stand-in"} for key in IMAGES}
    code, out, _ = run_cli("inspect", "img/hero.png", cwd=first)
    assert code == 0 and "made with: server stand-in" in out
    assert f"{REASON} (a dry run)" in out

    second = _checkout(tmp_path, "second", source=first)
    code, out, err = run_cli("plan", cwd=second)
    assert code == 0, err
    assert "remote cache" not in out


def test_cache_push_keeps_a_dry_runs_placeholders_local(tmp_path, run_cli, stand_in, shared):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", "--offline", cwd=first).code == 0
    code, out, err = run_cli("cache", "push", cwd=first)
    assert code == 0, err
    assert "pushed 0, 0 already there, 0 failed" in out
    note = (
        "note: 3 placeholders not pushed: made by the stand-in for the API (a dry run), they "
        "would be taken for the real images: they stay in the local cache only\n"
    )
    assert err == note
    assert _records(shared) == []
    code, out, _ = run_cli("cache", "push", "--json", cwd=first)
    assert code == 0 and json.loads(out)["placeholders"] == 3


def test_one_placeholder_kept_local_is_said_of_one(tmp_path, run_cli, stand_in, shared):
    first = _checkout(tmp_path, "first")
    code, _, err = run_cli("apply", "--target", "hero", cwd=first)
    assert code == 0, err
    one = (
        "made by the stand-in for the API (a dry run), it would be taken for the real "
        "image: it stays in the local cache only"
    )
    assert f"note: 1 placeholder not uploaded: {one}\n" in err
    code, _, err = run_cli("cache", "push", cwd=first)
    assert code == 0 and err == f"note: 1 placeholder not pushed: {one}\n"


def test_a_real_apply_after_a_dry_run_in_the_same_checkout_makes_every_image_again(
    tmp_path, run_cli, stand_in, shared, monkeypatch
):
    root = _checkout(tmp_path, "site")
    assert run_cli("apply", cwd=root).code == 0
    placeholders = {path: (root / path).read_bytes() for path in ("img/hero.png",)}
    _real_api(stand_in, monkeypatch)

    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 2, err
    assert out.count("regenerate  img/") == 3 and out.count(REASON) == 3
    assert "Plan: 3 to generate" in out
    code, out, _ = run_cli("status", cwd=root)
    assert out.count(REASON) == 3
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert len(stand_in.generations) == 3  # none restored from the cache
    assert _made_with(root) == {key: {} for key in IMAGES}
    assert (root / "img/hero.png").read_bytes() != placeholders["img/hero.png"]
    assert len(_records(shared)) == 3  # the real images are shared
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 0 and out.startswith("No changes: 3 images up to date.")


def test_a_real_apply_takes_no_placeholder_from_the_local_cache(
    tmp_path, run_cli, stand_in, monkeypatch
):
    """The dry run's lock and files were thrown away (`git checkout .`), its cache was not."""
    root = _checkout(tmp_path, "site")
    assert run_cli("apply", cwd=root).code == 0
    (root / "images.lock").unlink()
    shutil.rmtree(root / "img")
    _real_api(stand_in, monkeypatch)

    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert "from cache" not in out and "Plan: 3 to generate" in out
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert len(stand_in.generations) == 3
    assert _made_with(root) == {key: {} for key in IMAGES}


def test_a_run_that_may_reach_the_stand_in_keeps_its_placeholders_and_says_so(
    tmp_path, run_cli, stand_in, monkeypatch
):
    monkeypatch.setattr(noop, "RACY_SECONDS", 0.0)  # a no-op snapshot could be taken at once
    root = _checkout(tmp_path, "site")
    assert run_cli("apply", cwd=root).code == 0
    note = (
        "note for 3 images (hero, logo, …): a placeholder the stand-in for the API made: "
        "kept while NEBULA_BASE_URL is on loopback, even through a proxy to the real API "
        "(`nebula-build apply --replace hero --replace logo --replace tile` makes them for "
        "real); an apply elsewhere makes them again"
    )
    for _ in range(2):  # nor is the second one answered from a snapshot, without the note
        code, out, err = run_cli("plan", cwd=root)
        assert code == 0, err
        assert out.startswith("No changes: 3 images up to date.") and note in out
    code, out, _ = run_cli("status", cwd=root)
    # said once under the rows, as plan says it: a note, not an action's "~"
    assert out.startswith(
        f"hero  up to date  img/hero.png\nlogo  up to date  img/logo.webp\n"
        f"tile  up to date  img/tile.png\n  {note}\n\nStatus: "
    ), out
    assert "NAME" not in out
    notes = [a["notes"] for a in json.loads(run_cli("plan", "--json", cwd=root).out)["actions"]]
    assert "`nebula-build apply --replace tile` makes it for real" in notes[2][0]

    stand_in.marks_placeholders = False  # a proxy on loopback to the real API
    assert run_cli("apply", "--replace", "hero", cwd=root).code == 0
    assert _made_with(root)["hero"] == {}
    code, out, _ = run_cli("status", cwd=root)
    # fewer than three: each image's own line names it in the command, never a word
    assert "logo  up to date  img/logo.webp\n      note: a placeholder the stand-in" in out
    assert "(`nebula-build apply --replace logo` makes it for real)" in out
    code, out, _ = run_cli("plan", cwd=root)
    assert "\n  note for tile: a placeholder the stand-in for the API made" in out, out

    _real_api(stand_in, monkeypatch)
    code, out, _ = run_cli("plan", cwd=root)
    assert out.count(REASON) == 2 and "Plan: 2 to generate" in out


def test_a_remote_entry_marked_as_a_placeholder_is_refused(
    tmp_path, run_cli, nebula_server, shared
):
    first = _checkout(tmp_path, "first")
    assert run_cli("apply", cwd=first).code == 0
    for path in _records(shared):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "made_with": {"server": "stand-in"}}))
    second = _checkout(tmp_path, "second", source=first)
    nebula_server.reset_counters()
    code, out, err = run_cli("apply", cwd=second)
    assert code == 0, err
    assert len(nebula_server.generations) == 3
    assert (out + err).count("(a stand-in's placeholder); generated the image instead") == 3


def test_a_real_plan_does_not_adopt_a_placeholders_file_the_lock_lost(
    tmp_path, run_cli, stand_in, monkeypatch
):
    root = _checkout(tmp_path, "site")
    assert run_cli("apply", cwd=root).code == 0
    (root / "images.lock").unlink()  # the files stay
    _real_api(stand_in, monkeypatch)

    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert "already holds" not in out and out.count(REASON) == 3
    assert "Plan: 3 to generate" in out
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    assert len(stand_in.generations) == 3
    assert _made_with(root) == {key: {} for key in IMAGES}


def test_a_real_image_restored_from_the_remote_cache_is_recorded_as_the_real_one(
    tmp_path, run_cli, stand_in, shared, monkeypatch
):
    """A dry run offline, then a real apply beside the team's remote cache: the real
    images come from there, for free, and are recorded as what they are."""
    stand_in.marks_placeholders = False
    team = _checkout(tmp_path, "team")
    assert run_cli("apply", cwd=team).code == 0
    stand_in.marks_placeholders = True
    dev = _checkout(tmp_path, "dev")
    assert run_cli("apply", "--offline", cwd=dev).code == 0
    _real_api(stand_in, monkeypatch)

    code, out, err = run_cli("plan", cwd=dev)
    assert code == 0, err
    assert "Plan: 0 to generate, 0 to delete, 3 to restore (3 from remote cache)." in out
    assert run_cli("apply", cwd=dev).code == 0
    assert stand_in.generations == []
    assert _made_with(dev) == {key: {} for key in IMAGES}
    assert (dev / "img/hero.png").read_bytes() == (team / "img/hero.png").read_bytes()
    code, out, _ = run_cli("inspect", "img/hero.png", cwd=dev)
    assert code == 0 and "stand-in" not in out
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=dev)
    assert code == 0 and out.startswith("No changes: 3 images up to date.")


def test_a_lock_claiming_placeholders_costs_nothing_where_the_cache_holds_the_images(
    tmp_path, run_cli, nebula_server, monkeypatch
):
    """A pull request's lock marks every image a placeholder: the images this machine's
    cache holds are restored, not priced, and the lock says what they are again."""
    root = _checkout(tmp_path, "site")
    assert run_cli("apply", cwd=root).code == 0
    lock = root / "images.lock"
    claim = 'params = {\\1}\nmade_with = { server = "stand-in" }\n'
    lock.write_text(re.sub(r"params = \{(.*)\}\n", claim, lock.read_text()))
    assert _made_with(root) == {key: {"server": "stand-in"} for key in IMAGES}
    _real_api(nebula_server, monkeypatch)

    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert out.count(REASON) == 3
    assert "Plan: 0 to generate, 0 to delete, 3 to restore." in out
    assert "kept while" not in out
    assert run_cli("apply", "--max-cost", "0.001", "--yes", cwd=root).code == 0
    assert nebula_server.generations == []
    assert _made_with(root) == {key: {} for key in IMAGES}
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 0 and out.startswith("No changes: 3 images up to date.")


def test_a_server_off_loopback_that_marks_its_answers_is_not_paid_again_by_every_apply(
    tmp_path, run_cli, stand_in, shared, monkeypatch
):
    """Only the loopback stand-in makes placeholders: a server elsewhere (a proxy) that
    adds the mark has made the real images, shared and kept."""
    _real_api(stand_in, monkeypatch)
    stand_in.marks_placeholders = True
    root = _checkout(tmp_path, "site")
    code, out, err = run_cli("apply", cwd=root)
    assert code == 0, err
    warning = "recorded as the real image"
    assert (out + err).count(warning) == 3 and "not uploaded" not in err
    assert _made_with(root) == {key: {} for key in IMAGES}
    assert len(_records(shared)) == 3
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 0 and out.startswith("No changes: 3 images up to date.")
    assert len(stand_in.generations) == 3


def test_cache_pull_in_a_real_run_fetches_the_images_a_dry_run_left_placeholders_of(
    tmp_path, run_cli, stand_in, shared, monkeypatch
):
    stand_in.marks_placeholders = False
    team = _checkout(tmp_path, "team")
    assert run_cli("apply", cwd=team).code == 0
    stand_in.marks_placeholders = True
    dev = _checkout(tmp_path, "dev")
    assert run_cli("apply", "--offline", cwd=dev).code == 0
    _real_api(stand_in, monkeypatch)

    code, out, err = run_cli("cache", "status", cwd=dev)
    assert code == 0, err
    assert "0 in the local cache, 3 in the remote cache" in out
    code, out, err = run_cli("cache", "pull", cwd=dev)
    assert code == 0, err
    assert "pulled 3, 0 already there, 0 failed" in out
    code, out, err = run_cli("apply", "--offline", cwd=dev)
    assert code == 0, err
    assert "3 to restore" in out and stand_in.generations == []
    assert _made_with(dev) == {key: {} for key in IMAGES}


def test_a_real_run_after_a_dry_run_does_not_price_with_the_stand_ins_list(
    tmp_path, run_cli, stand_in, monkeypatch
):
    """The stand-in's prices are its own: cached, a real `--max-cost` would have trusted
    them for a day."""
    root = _checkout(tmp_path, "first")
    stand_in.prices = dict.fromkeys(stand_in.prices, 0.111)
    code, _, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, err
    _real_api(stand_in, monkeypatch)
    stand_in.prices = dict.fromkeys(stand_in.prices, 0.002)
    code, out, err = run_cli("plan", cwd=root)
    assert code == 0, err
    assert "0.111" not in out  # the plan reads the cache only: no list is known yet
    code, out, err = run_cli("apply", "--yes", "--max-cost", "0.05", cwd=root)
    assert code == 0, err
    assert "0.111" not in out + err and "$0.006" in out + err


def test_a_placeholder_restored_as_the_real_image_rebuilds_its_atlas(
    tmp_path, run_cli, stand_in, shared, monkeypatch
):
    """A member's placeholder put back as the real image (a restore, as a moved or missing
    output's is) changes its pixels: its atlas is built again, said in the plan."""
    atlas = '\n[atlases.pair]\nimages = ["hero", "tile"]\noutput = "img/pair.png"\n'
    first = _checkout(tmp_path, "first")
    (first / "images.toml").write_text(nebula_manifest(IMAGES) + atlas)
    assert run_cli("apply", cwd=first).code == 0
    _real_api(stand_in, monkeypatch)
    second = _checkout(tmp_path, "second", source=first)
    assert run_cli("apply", cwd=second).code == 0  # the real images, shared

    code, out, err = run_cli("plan", cwd=first)
    assert code == 0, err
    assert "< hero  restore  img/hero.png" in out, out
    assert "~ atlas pair  build  img/pair.png\n      members change: hero, tile\n" in out
