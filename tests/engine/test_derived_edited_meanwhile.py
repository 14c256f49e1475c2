"""An atlas sheet or the asset manifest changed by hand after the build looked at it,
before it is replaced, is a conflict (kept), or with --force backed up first. The edit
lands while the sheet renders (or the manifest is planned): the build's own steps,
wrapped, make it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nebula_build.engine import derived
from nebula_build.state import guard
from tests.conftest import fake_manifest

HAND = b"edited by hand while the build ran"
FILES = '\n[assets]\nmanifest = "sprites/images.json"\n' + (
    '\n[atlases.sheet]\nimages = ["a", "b"]\noutput = "sprites/sheet.png"\n'
)


def _manifest(log: Path, prompt: str) -> str:
    images = {n: {"prompt": f"{prompt} {n}", "output": f"sprites/{n}.png"} for n in "ab"}
    return fake_manifest(log, images) + FILES


def _editing(
    path: Path, step: Callable[..., Any], when: Callable[..., bool] = lambda **_: True
) -> Callable[..., Any]:
    """`step`, then a hand edit to `path` (where `when` holds for its keywords)."""

    def edited(*args: Any, **kwargs: Any) -> Any:
        result = step(*args, **kwargs)
        if when(**kwargs):
            with path.open("ab") as handle:
                handle.write(HAND)
        return result

    return edited


@pytest.fixture
def built(project, run_cli, fake_site, tmp_path) -> Path:
    root = project({"images.toml": _manifest(tmp_path / "log", "first")})
    code, _, err = run_cli("apply")
    assert code == 0, err
    (root / "images.toml").write_text(_manifest(tmp_path / "log", "second"))
    return root


@pytest.mark.parametrize("force", [False, True], ids=["conflict", "force"])
def test_a_sheet_edited_while_it_renders_is_not_overwritten(built, run_cli, monkeypatch, force):
    sheet = built / "sprites/sheet.png"
    monkeypatch.setattr(derived, "render_atlas", _editing(sheet, derived.render_atlas))
    code, _, err = run_cli("apply", *(["--force"] if force else []))
    backups = list((built / ".nebula-build/backup").rglob("sheet.png"))
    if force:
        assert code == 0, err
        assert not sheet.read_bytes().endswith(HAND)
        assert len(backups) == 1 and backups[0].read_bytes().endswith(HAND)
    else:
        assert code == 1, err
        assert sheet.read_bytes().endswith(HAND)
        assert "sprites/sheet.png: changed by hand during the apply" in err
        assert not backups


@pytest.mark.parametrize("force", [False, True], ids=["conflict", "force"])
def test_an_asset_manifest_edited_before_its_write_is_not_overwritten(
    built, run_cli, monkeypatch, force
):
    target = built / "sprites/images.json"
    planned = derived.assetmanifest.plan_asset_manifest
    building = _editing(target, planned, when=lambda wanted, **_: wanted is not None)
    monkeypatch.setattr(derived.assetmanifest, "plan_asset_manifest", building)
    code, _, err = run_cli("apply", *(["--force"] if force else []))
    backups = list((built / ".nebula-build/backup").rglob("images.json"))
    if force:
        assert code == 0, err
        assert not target.read_bytes().endswith(HAND)
        assert len(backups) == 1 and backups[0].read_bytes().endswith(HAND)
    else:
        assert code == 1, err
        assert target.read_bytes().endswith(HAND)
        assert "sprites/images.json: changed by hand during the apply" in err


EXPORTED = '\n[atlases.sheet]\nimages = ["a", "b"]\noutput = "sprites/sheet.png"\n' + (
    'aseprite = "sprites/sheet.aseprite.json"\n'
)


def test_an_export_edited_while_the_sheet_renders_leaves_the_whole_atlas(
    project, run_cli, fake_site, tmp_path, monkeypatch
):
    """Every file of the atlas is checked before any is written: the sheet is not
    replaced under a frame map that still names the old one."""

    def manifest(prompt: str) -> str:
        images = {n: {"prompt": f"{prompt} {n}", "output": f"sprites/{n}.png"} for n in "ab"}
        return fake_manifest(tmp_path / "log", images) + EXPORTED

    root = project({"images.toml": manifest("first")})
    assert run_cli("apply").code == 0
    atlas = [root / f"sprites/{name}" for name in ("sheet.png", "sheet.json")]
    before = [path.read_bytes() for path in atlas]
    export = root / "sprites/sheet.aseprite.json"
    (root / "images.toml").write_text(manifest("second"))
    render = derived.render_atlas
    monkeypatch.setattr(derived, "render_atlas", _editing(export, render))
    code, _, err = run_cli("apply")
    assert code == 1, err
    assert "sprites/sheet.aseprite.json: changed by hand during the apply" in err
    assert export.read_bytes().endswith(HAND)
    assert [path.read_bytes() for path in atlas] == before
    monkeypatch.setattr(derived, "render_atlas", render)
    code, out, err = run_cli("plan")
    assert "sheet.png changed by hand" not in out + err


def test_a_dropped_export_edited_while_the_sheet_renders_stays(
    project, run_cli, fake_site, tmp_path, monkeypatch
):
    def manifest(export: bool) -> str:
        images = {n: {"prompt": f"p {n}", "output": f"sprites/{n}.png"} for n in "ab"}
        return fake_manifest(tmp_path / "log", images) + (EXPORTED if export else FILES)

    root = project({"images.toml": manifest(True)})
    assert run_cli("apply").code == 0
    export = root / "sprites/sheet.aseprite.json"
    (root / "images.toml").write_text(manifest(False))
    monkeypatch.setattr(derived, "render_atlas", _editing(export, derived.render_atlas))
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert export.read_bytes().endswith(HAND)  # the manifest dropped it; the hand kept it


def test_force_backs_up_an_edited_sheet_once(built, run_cli, monkeypatch):
    import itertools

    sheet = built / "sprites/sheet.png"
    monkeypatch.setattr(derived, "render_atlas", _editing(sheet, derived.render_atlas))
    ticks = itertools.count()  # each stamp a second later, as on a slow disk
    monkeypatch.setattr(guard.time, "strftime", lambda *_: f"20260101T0000{next(ticks):02d}")
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    assert len(list((built / ".nebula-build/backup").rglob("sheet.png"))) == 1
