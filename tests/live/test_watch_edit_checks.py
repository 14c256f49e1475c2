"""A watch edit resolved alone refuses what the whole path refuses."""

from __future__ import annotations

import asyncio

import pytest

from nebula_build.engine.prepare import prepare
from nebula_build.errors import NebulaBuildError
from nebula_build.plugin.manager import load_registry
from nebula_build.state.project import Project
from tests.conftest import fake_manifest, generation_log
from tests.live.scripted import running_watch


def _images(names: str) -> dict[str, dict[str, object]]:
    return {name: {"prompt": name, "output": f"out/{name}.png"} for name in names}


def _whole_refuses(root) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(NebulaBuildError) as caught:
        prepare(Project(root, root / "images.toml"), load_registry())
    return str(caught.value)


def _edit_round(root, log, text: str):  # type: ignore[no-untyped-def]
    manifest = root / "images.toml"

    async def scenario():  # type: ignore[no-untyped-def]
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            made = len(generation_log(log))
            manifest.write_text(text)
            await script.queue.put({manifest})
            edited = await script.next_round(timeout=30)
        return edited, generation_log(log)[made:]

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "after_b", ["\u00a0\n", "\x0c\n", "\u3000\n", " \r \n"], ids=["nbsp", "ff", "ideo", "cr"]
)
def test_whitespace_toml_does_not_allow_ends_no_table_in_an_edit(
    project, fake_site, tmp_path, after_b
):
    log = tmp_path / "gen.log"
    images = _images("abc")
    root = project({"images.toml": fake_manifest(log, images)})
    images["b"]["prompt"] = "b, edited"
    line = 'output = "out/b.png"\n'
    text = fake_manifest(log, images).replace(line, line.rstrip("\n") + after_b)
    edited, made = _edit_round(root, log, text)
    assert made == []
    assert edited.error is not None and "invalid TOML" in edited.error
    assert "invalid TOML" in _whole_refuses(root)


def test_max_images_counts_a_matrix_expanded_in_an_edit(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    images = _images("a")
    images["m"] = {"prompt": "m {v}", "output": "out/m-{v}.png", "matrix": {"v": ["r", "g", "b"]}}
    images["b"] = {"prompt": "b", "output": "out/b.png"}
    head = "version = 1\nmax_images = 5\n"
    root = project({"images.toml": fake_manifest(log, images).replace("version = 1\n", head, 1)})
    images.update(_images("de"))
    text = fake_manifest(log, images).replace("version = 1\n", head, 1)
    edited, made = _edit_round(root, log, text)
    assert made == []
    assert edited.error is not None and "max_images = 5" in edited.error
    assert "max_images = 5" in _whole_refuses(root)


def test_an_input_no_image_reads_any_more_never_blocks_an_edit(project, fake_site, tmp_path):
    from PIL import Image

    log = tmp_path / "gen.log"
    images = _images("ab")
    fill = {"model": "black-forest-labs/FLUX.1-Fill-dev", "mask": "in/mask.png"}
    images["c"] = {"prompt": "c", "output": "out/c.png", "image": "in/x.png", **fill}
    root = project({"images.toml": fake_manifest(log, images)})
    (root / "in").mkdir()
    for name in ("x.png", "mask.png"):
        Image.new("RGB", (64, 64)).save(root / "in" / name)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the project's")
    manifest = root / "images.toml"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, _):
            await script.next_round(timeout=30)
            images["c"] = {"prompt": "c2", "output": "out/c.png"}  # in/x.png is read no more
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            await script.next_round(timeout=30)
            (root / "in/x.png").unlink()
            (root / "in/x.png").symlink_to(outside)
            images["b"]["prompt"] = "b2"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            edited = await script.next_round(timeout=30)
            assert edited.error is None
            assert edited.changed == ["b"]

    asyncio.run(scenario())
