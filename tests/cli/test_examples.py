"""The examples build end to end offline, as the README promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nebula_build.engine.prepare import prepare
from nebula_build.plugin.manager import load_registry
from nebula_build.state.project import Project
from tests.conftest import image_info

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


README = EXAMPLES.parent / "README.md"


def test_the_readmes_game_sprite_builds_as_written(project, run_cli):
    """Copied into a project on the preview backend, the README's potion had failed its
    own max_kb check (21.6 KiB at 1024 × 1024)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Game sprites") :]
    sprite = re.search(r"```toml\n(.*?)```", section, re.S)
    assert sprite is not None
    head = 'version = 1\n[defaults]\nbackend = "preview"\n'
    head += 'model = "black-forest-labs/FLUX.1-schnell"\n\n'
    root = project({"images.toml": head + sprite.group(1)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    with Image.open(root / "sprites/potion.png") as potion:
        assert potion.mode == "RGBA" and potion.getchannel("A").getextrema()[0] == 0


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
    code, _, err = run_cli("-C", str(root), "apply")
    assert code == 0, err
    project = Project.find(root)
    specs = prepare(project, load_registry(), backend="preview").specs
    assert specs
    for spec in specs.values():
        for path, width, height in [(spec.output, *spec.delivered_size), *spec.variants]:
            size = image_info(root / path)[1]
            if spec.steps.get("trim"):  # cropped to the sprite: never larger
                assert size[0] <= width and size[1] <= height, path
            else:
                assert size == (width, height), path
    assert run_cli("-C", str(root), "plan", "--detailed-exitcode").code == 0


@pytest.mark.parametrize("name", ["static-site", "game-sprites"])
def test_example_is_up_to_date_after_the_readme_set_up(name, tmp_path, run_cli):
    """The set-up command names no backend: status, plan and the gallery agree with it."""
    root = tmp_path / name
    shutil.copytree(EXAMPLES / name, root, ignore=ignored_by_the_example(EXAMPLES / name))
    assert run_cli("-C", str(root), "apply").code == 0
    code, out, err = run_cli("-C", str(root), "status")
    assert code == 0, err
    assert "pending" not in out and "backend changed" not in out, out
    assert run_cli("-C", str(root), "plan", "--detailed-exitcode").code == 0


def ignored_by_the_example(example: Path):
    """What a fresh clone lacks: the files the example's .gitignore names (its plain
    patterns: a name anywhere, or a path from the example's folder), so a checkout
    where the set-up already ran copies like a fresh one."""
    patterns = {
        line.strip().rstrip("/")
        for line in (example / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    names = {pattern for pattern in patterns if "/" not in pattern}

    def ignore(folder: str, entries: list[str]) -> set[str]:
        relative = Path(folder).relative_to(example)
        return {
            entry
            for entry in entries
            if entry in names or (relative / entry).as_posix() in patterns
        }

    return ignore


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_static_site_set_up_leaves_git_status_clean(tmp_path, run_cli):
    """The README's set-up (apply, then build.py) writes only files the example ignores."""
    root = tmp_path / "static-site"
    shutil.copytree(
        EXAMPLES / "static-site", root, ignore=ignored_by_the_example(EXAMPLES / "static-site")
    )
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "clone"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    assert run_cli("-C", str(root), "apply").code == 0
    built = subprocess.run(
        [sys.executable, str(root / "build.py")], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    status = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


def static_site(tmp_path: Path) -> Path:
    """The static-site example as a new user finds it: nothing built yet."""
    root = tmp_path / "static-site"
    ignored = shutil.ignore_patterns(".nebula-build", "images.lock", "static", "index.html")
    shutil.copytree(EXAMPLES / "static-site", root, ignore=ignored)
    return root


def test_static_site_page_is_built_from_the_asset_manifest(tmp_path, run_cli):
    root = static_site(tmp_path)
    assert run_cli("-C", str(root), "apply", "--backend", "preview").code == 0
    done = subprocess.run(
        [sys.executable, str(root / "build.py")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    page = (root / "index.html").read_text()
    assert "{{" not in page
    listed = json.loads((root / "static/images.json").read_text())["images"]
    assert len(re.findall(r"<img ", page)) == len(listed)
    # the product grid from data/products.csv (in stock only), the covers from the posts
    assert [name for name in listed if name.startswith("product[")] == [
        "product[bread-sourdough]",
        "product[tea-black]",
        "product[tea-green]",
    ]
    assert listed["product[tea-green]"]["row"] == "tea-green"
    assert "<p>Green tea · €3.50</p>" in page and "Cinnamon bun" not in page
    assert 'id="winter-menu"' in page and 'alt="The winter menu"' in page
    assert (
        'srcset="static/img/hero-480.webp 480w, static/img/hero-960.webp 960w, '
        'static/img/hero.webp 1344w"' in page
    )
    assert 'width="96" height="96" alt="Harbour Café logo"' in page
    for source in re.findall(r'(?:src|srcset)="([^"]+)"', page):
        for item in source.split(", "):
            assert (root / item.split(" ")[0]).is_file(), item


def test_static_site_page_escapes_what_the_data_says(tmp_path, run_cli):
    """A pull request can change data/products.csv: its values are text in the page."""
    root = static_site(tmp_path)
    with (root / "data/products.csv").open("a", encoding="utf-8") as data:
        data.write(
            '"tea, iced",Iced tea,a glass of iced tea,<img src=x onerror=alert(1)>,drinks,5\n'
        )
    assert run_cli("-C", str(root), "apply", "--backend", "preview").code == 0
    done = subprocess.run(
        [sys.executable, str(root / "build.py")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    page = (root / "index.html").read_text()
    assert "<img src=x" not in page
    assert "<p>Iced tea · €&lt;img src=x onerror=alert(1)&gt;</p>" in page
    assert 'src="static/img/products/tea%2C%20iced.webp"' in page


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
    ghost = frames["enemy[ghost,attack]"]
    assert ghost["trimmed"] and ghost["sourceSize"] == {"w": 64, "h": 64}
    with Image.open(root / "assets/sprites/characters.png") as sheet:
        assert sheet.mode == "RGBA" and sheet.getchannel("A").getextrema()[0] == 0
    aseprite = json.loads((root / "assets/sprites/enemies.aseprite.json").read_text())
    assert [tag["name"] for tag in aseprite["meta"]["frameTags"]][:2] == [
        "slime_idle",
        "slime_attack",
    ]
    tres = (root / "assets/sprites/enemies.tres").read_text()
    assert 'path="res://assets/sprites/enemies.png"' in tres


def test_static_site_build_before_apply_says_to_apply_first(tmp_path):
    root = static_site(tmp_path)
    done = subprocess.run(
        [sys.executable, str(root / "build.py")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{root / 'static/images.json'} does not exist yet: "
        "run `nebula-build apply` first, then `python build.py`"
    ]
    assert not (root / "index.html").exists()
