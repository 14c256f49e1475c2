"""The examples build end to end offline, as the README promises."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.conftest import image_info

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name", ["static-site", "game-sprites"])
def test_example_builds_on_the_preview_backend(name, tmp_path, run_cli):
    root = tmp_path / name
    shutil.copytree(
        EXAMPLES / name,
        root,
        ignore=shutil.ignore_patterns(".nebula-build", "images.lock", "static", "assets"),
    )
    if (EXAMPLES / name / "assets").exists() and name == "static-site":
        shutil.copytree(EXAMPLES / name / "assets", root / "assets")
    code, _, err = run_cli("-C", str(root), "apply", "--backend", "preview")
    assert code == 0, err
    images = tomllib.loads((root / "images.toml").read_text())
    defaults = images["defaults"]
    for image in images["images"].values():
        size = (image.get("width", defaults["width"]), image.get("height", defaults["height"]))
        assert image_info(root / image["output"])[1] == size
    assert run_cli("-C", str(root), "plan", "--backend", "preview", "--detailed-exitcode").code == 0


def test_static_site_page_uses_only_declared_images():
    page = (EXAMPLES / "static-site/index.html").read_text()
    declared = {
        i["output"]
        for i in tomllib.loads((EXAMPLES / "static-site/images.toml").read_text())[
            "images"
        ].values()
    }
    used = set(re.findall(r'src="([^"]+)"', page))
    assert used == declared
