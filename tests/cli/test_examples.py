"""The examples build end to end offline, as the README promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nebula_build.engine.prepare import prepare
from nebula_build.plugin.manager import load_registry
from nebula_build.state.project import Project
from tests.conftest import image_info

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["static-site", "game-sprites"])
def test_example_builds_on_the_preview_backend(name, tmp_path, run_cli):
    root = tmp_path / name
    shutil.copytree(
        EXAMPLES / name,
        root,
        ignore=shutil.ignore_patterns(
            ".nebula-build", "images.lock", "static", "assets", "index.html"
        ),
    )
    if (EXAMPLES / name / "assets").exists() and name == "static-site":
        shutil.copytree(EXAMPLES / name / "assets", root / "assets")
    code, _, err = run_cli("-C", str(root), "apply", "--backend", "preview")
    assert code == 0, err
    project = Project.find(root)
    specs = prepare(project, load_registry(), backend="preview").specs
    assert specs
    for spec in specs.values():
        for path, width, height in [(spec.output, *spec.delivered_size), *spec.variants]:
            assert image_info(root / path)[1] == (width, height), path
    assert run_cli("-C", str(root), "plan", "--backend", "preview", "--detailed-exitcode").code == 0


def test_static_site_page_is_built_from_the_asset_manifest(tmp_path, run_cli):
    root = tmp_path / "static-site"
    shutil.copytree(
        EXAMPLES / "static-site",
        root,
        ignore=shutil.ignore_patterns(".nebula-build", "images.lock", "static", "index.html"),
    )
    assert run_cli("-C", str(root), "apply", "--backend", "preview").code == 0
    done = subprocess.run(
        [sys.executable, str(root / "build.py")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    page = (root / "index.html").read_text()
    assert "{{" not in page
    declared = set(tomllib.loads((root / "images.toml").read_text())["images"])
    assert len(re.findall(r"<img ", page)) == len(declared)
    assert (
        'srcset="static/img/hero-480.webp 480w, static/img/hero-960.webp 960w, '
        'static/img/hero.webp 1344w"' in page
    )
    assert 'width="96" height="96" alt="Harbour Café logo"' in page
    for source in re.findall(r'(?:src|srcset)="([^"]+)"', page):
        for item in source.split(", "):
            assert (root / item.split(" ")[0]).is_file(), item


def test_game_sprites_atlas_lists_every_sprite(tmp_path, run_cli):
    root = tmp_path / "game-sprites"
    shutil.copytree(
        EXAMPLES / "game-sprites",
        root,
        ignore=shutil.ignore_patterns(".nebula-build", "images.lock", "assets"),
    )
    assert run_cli("-C", str(root), "apply", "--backend", "preview").code == 0
    frames = json.loads((root / "assets/sprites/characters.json").read_text())["frames"]
    assert len(frames) == 8 and "enemy[ghost,attack]" in frames
    assert frames["potion"]["frame"]["w"] == 32
