"""Watch mode with images from data: the data files and the folders of posts are watched."""

from __future__ import annotations

import asyncio
import io

import pytest

from nebula_build.errors import UserError
from tests.conftest import fake_manifest, generation_log
from tests.live.scripted import Script, make_watcher, running_watch

CSV = "sku,name,stock\nT-1,Green tea,4\nB-1,Sourdough,0\n"
IMAGES = {
    "product": {
        "rows": "data/products.csv",
        "id": "sku",
        "prompt": "photo of {name}",
        "output": "img/{sku}.png",
    },
    "cover": {
        "rows": {"files": "posts/*.md"},
        "prompt": "cover for {title}",
        "output": "img/cover-{slug}.png",
    },
}


def test_an_edited_row_starts_a_round_that_remakes_only_its_image(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project(
        {
            "images.toml": fake_manifest(log, IMAGES),
            "data/products.csv": CSV,
            "posts/a.md": "---\ntitle: A\n---\n",
        }
    )
    data = root / "data/products.csv"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            first = await script.next_round()
            assert sorted(first.changed) == ["cover[a]", "product[B-1]", "product[T-1]"]
            assert data in watcher.watched_paths()
            assert root / "posts/a.md" in watcher.watched_paths()
            assert watcher.wants(root / "posts/new.md")  # a post added to the folder
            assert not watcher.wants(root / "posts/notes.txt")
            assert not watcher.wants(root / "img/T-1.png")  # its own outputs never do

            data.write_text(CSV.replace("Sourdough", "Rye bread").replace(",4", ",9"))
            await script.queue.put({data})
            second = await script.next_round()
            assert second.changed == ["product[B-1]"]

            data.write_text("sku,name,stock\nT-1,,4\n")  # a broken row: said, and watch goes on
            await script.queue.put({data})
            assert (
                "data/products.csv:2:5: images.product: column 'name' is empty"
                in (await script.next_round()).error
            )

    asyncio.run(scenario())
    assert sorted(generation_log(log)) == [
        "cover[a]",
        "product[B-1]",
        "product[B-1]",
        "product[T-1]",
    ]


def test_a_data_file_broken_from_the_start_is_watched_until_fixed(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    root = project(
        {
            "images.toml": fake_manifest(log, IMAGES),
            "data/products.csv": "sku,name,stock\nT-1,,4\n",
            "posts/a.md": "---\ntitle: [broken\n---\n",
        }
    )

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert (await script.next_round()).error
            assert root / "data/products.csv" in watcher.watched_paths()
            assert watcher.wants(root / "posts/a.md")
            (root / "data/products.csv").write_text(CSV)
            (root / "posts/a.md").write_text("---\ntitle: A\n---\n")
            await script.queue.put({root / "data/products.csv"})
            fixed = await script.next_round()
            assert sorted(fixed.changed) == ["cover[a]", "product[B-1]", "product[T-1]"]

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_post_saved_on_disk_starts_a_round(project, tmp_path):
    manifest = fake_manifest(tmp_path / "log", {"cover": IMAGES["cover"]}).replace(
        'backend = "fake"', 'backend = "preview"'
    )
    root = project({"images.toml": manifest, "posts/a.md": "---\ntitle: A\n---\n"})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round()
            await asyncio.sleep(0.3)  # the watcher is listening
            (root / "posts/b.md").write_text("---\ntitle: B\n---\n")
            assert (await script.next_round(timeout=5)).changed == ["cover[b]"]
            (root / "posts/a.md").write_text("---\ntitle: A, edited\n---\n")
            assert (await script.next_round(timeout=5)).changed == ["cover[a]"]

    asyncio.run(scenario())


def test_an_editors_lock_link_beside_the_posts_starts_no_round(project, tmp_path):
    manifest = fake_manifest(tmp_path / "log", {"cover": IMAGES["cover"]}).replace(
        'backend = "fake"', 'backend = "preview"'
    )
    root = project({"images.toml": manifest, "posts/a.md": "---\ntitle: A\n---\n"})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round()
            await asyncio.sleep(0.3)  # the watcher is listening
            lock = root / "posts/.#a.md"  # Emacs, at the first keystroke: a dangling link
            lock.symlink_to("someone@host.4242:1700000000")
            with pytest.raises(TimeoutError):  # never read as a post: nothing to do
                await script.next_round(timeout=1.5)
            (root / "posts/a.md").write_text("---\ntitle: A, edited\n---\n")
            lock.unlink()  # saved: the lock goes
            assert (await script.next_round(timeout=5)).changed == ["cover[a]"]
        assert "error" not in out.getvalue()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("rows", "made", "name"),
    [
        ("nodir/deeper/x.csv", "nodir/deeper/x.csv", "product[T-1]"),
        ({"files": "content/drafts/*.md"}, "content/drafts/a.md", "product[a]"),
        ({"files": ["content/*.md", "content/drafts/*.md"]}, "content/drafts/a.md", "product[a]"),
    ],
)
def test_a_data_folder_made_after_watch_starts_is_watched(project, tmp_path, rows, made, name):
    product = {**IMAGES["product"], "rows": rows}
    if isinstance(rows, dict):
        del product["id"]
        product["output"] = "img/{slug}.png"
    manifest = fake_manifest(tmp_path / "log", {"product": product}).replace(
        'backend = "fake"', 'backend = "preview"'
    )
    root = project({"images.toml": manifest})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            assert "not found" in (await script.next_round()).error
            await asyncio.sleep(0.3)  # the watcher is listening
            (root / made).parent.mkdir(parents=True)
            (root / made).write_text(CSV if made.endswith(".csv") else "---\nname: A\n---\n")
            for _ in range(3):  # the folder's creation may be a round of its own
                report = await script.next_round(timeout=5)
                if report.changed:
                    break
            assert name in report.changed

    asyncio.run(scenario())


def test_watch_fails_loudly_when_watching_the_files_fails(project, fake_site, tmp_path):
    root = project({"images.toml": fake_manifest(tmp_path / "log", {})})

    async def broken():
        yield {root / "images.toml"}
        raise FileNotFoundError("nodir")

    async def scenario() -> None:
        script, out = Script(), io.StringIO()
        watcher = make_watcher(root, script, out)
        with pytest.raises(UserError, match="watch stopped: cannot watch the files: nodir"):
            await asyncio.wait_for(watcher.run(broken()), 10)

    asyncio.run(scenario())


NESTED = {
    "cover": {
        "rows": {"files": "content/**/*.md"},
        "prompt": "cover for {title}",
        "output": "img/cover-{slug}.png",
    }
}


def test_posts_in_subfolders_are_watched_and_a_new_subfolder_starts_a_round(
    project, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    root = project(
        {
            "images.toml": fake_manifest(log, NESTED),
            "content/2025/a.md": "---\ntitle: A\n---\n",
            "content/.drafts/x.md": "---\ntitle: X\n---\n",
        }
    )

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert (await script.next_round()).changed == ["cover[a]"]
            assert {root / "content", root / "content/2025"} <= watcher.post_folders()
            assert root / "content/.drafts" not in watcher.post_folders()
            assert watcher.wants(root / "content/2025/new.md")  # a post added in a subfolder
            assert watcher.wants(root / "content/top.md")  # `**` matching no folder
            assert not watcher.wants(root / "content/2025/notes.txt")
            assert not watcher.wants(root / "content/.drafts/y.md")  # hidden: not walked
            assert not watcher.wants(root / "content/.drafts")

            (root / "content/2027/spring").mkdir(parents=True)  # a new subfolder, two deep
            (root / "content/2027/spring/b.md").write_text("---\ntitle: B\n---\n")
            assert watcher.wants(root / "content/2027")  # what watchfiles reports of it
            await script.queue.put({root / "content/2027"})
            assert (await script.next_round()).changed == ["cover[b]"]
            assert root / "content/2027/spring" in watcher.post_folders()

            (root / "content/2027/spring/b.md").write_text("---\ntitle: [broken\n---\n")
            await script.queue.put({root / "content/2027/spring/b.md"})
            assert "content/2027/spring/b.md:2:8: images.cover" in (await script.next_round()).error
            assert watcher.wants(root / "content/2027/spring/b.md")  # watched until fixed
            (root / "content/2027/spring/b.md").write_text("---\ntitle: B, edited\n---\n")
            await script.queue.put({root / "content/2027/spring/b.md"})
            assert (await script.next_round()).changed == ["cover[b]"]

    asyncio.run(scenario())


HUGO = {
    "cover": {
        "rows": {"files": ["content/posts/*.md", "content/posts/*/index.md"]},
        "prompt": "cover for {title}",
        "output": "img/cover-{slug}.png",
    }
}


def test_the_posts_of_every_pattern_are_watched(project, fake_site, tmp_path):
    root = project(
        {
            "images.toml": fake_manifest(tmp_path / "log", HUGO),
            "content/posts/a.md": "---\ntitle: A\n---\n",
            "content/posts/b/index.md": "---\ntitle: B\n---\n",
        }
    )
    posts = root / "content/posts"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert sorted((await script.next_round()).changed) == ["cover[a]", "cover[b]"]
            assert {posts, posts / "b"} <= watcher.post_folders()
            assert watcher.wants(posts / "new.md")  # the first pattern's
            assert watcher.wants(posts / "b/index.md")  # the second's
            assert not watcher.wants(posts / "b/photo.md")  # neither pattern's

            (posts / "b/index.md").write_text("---\ntitle: B, edited\n---\n")
            await script.queue.put({posts / "b/index.md"})
            assert (await script.next_round()).changed == ["cover[b]"]

            (posts / "c").mkdir()  # a new page bundle
            (posts / "c/index.md").write_text("---\ntitle: C\n---\n")
            assert watcher.wants(posts / "c")  # what watchfiles reports of it
            await script.queue.put({posts / "c"})
            assert (await script.next_round()).changed == ["cover[c]"]
            assert posts / "c" in watcher.post_folders()
            # heard again once it is watched: it holds what the round walked, no round
            await script.queue.put({posts / "c"})
            with pytest.raises(TimeoutError):
                await script.next_round(timeout=1.5)
            (posts / "d").mkdir()
            (posts / "d/index.md").write_text("---\ntitle: D\n---\n")
            await script.queue.put({posts / "d"})
            assert (await script.next_round()).changed == ["cover[d]"]
            (posts / "c/index.md").rename(posts / "c/old.md")
            await script.queue.put({posts / "c"})  # now it holds other names
            await script.next_round()
            assert not (root / "img/cover-c.png").exists()

            (posts / "a.md").unlink()  # the first pattern's post removed
            await script.queue.put({posts / "a.md"})
            await script.next_round()
            assert not (root / "img/cover-a.png").exists()

    asyncio.run(scenario())


def test_a_post_in_a_subfolder_broken_from_the_start_is_watched(project, fake_site, tmp_path):
    root = project(
        {
            "images.toml": fake_manifest(tmp_path / "log", NESTED),
            "content/2026/06/a.md": "---\ntitle: [broken\n---\n",
        }
    )

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert (await script.next_round()).error
            assert root / "content/2026/06" in watcher.post_folders()
            assert watcher.wants(root / "content/2026/06/a.md")
            (root / "content/2026/06/a.md").write_text("---\ntitle: A\n---\n")
            await script.queue.put({root / "content/2026/06/a.md"})
            assert (await script.next_round()).changed == ["cover[a]"]

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_page_bundle_saved_on_disk_in_a_new_folder_starts_a_round(project, tmp_path):
    bundle = {**NESTED["cover"], "rows": {"files": "content/posts/*/index.md"}}
    manifest = fake_manifest(tmp_path / "log", {"cover": bundle}).replace(
        'backend = "fake"', 'backend = "preview"'
    )
    root = project({"images.toml": manifest, "content/posts/a/index.md": "---\ntitle: A\n---\n"})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            assert (await script.next_round()).changed == ["cover[a]"]
            await asyncio.sleep(0.3)  # the watcher is listening
            (root / "content/posts/new-post").mkdir()
            (root / "content/posts/new-post/index.md").write_text("---\ntitle: New\n---\n")
            for _ in range(3):  # the folder's creation may be a round of its own
                report = await script.next_round(timeout=5)
                if report.changed:
                    break
            assert report.changed == ["cover[new-post]"]
            for _ in range(3):  # the new folder is watched from now on
                await asyncio.sleep(1.5)
                (root / "content/posts/new-post/index.md").write_text("---\ntitle: Edited\n---\n")
                report = await script.next_round(timeout=5)
                if report.changed:
                    break
            assert report.changed == ["cover[new-post]"]

    asyncio.run(scenario())


def test_editing_columns_and_defaults_starts_a_round_that_remakes_only_what_they_change(
    project, fake_site, tmp_path
):
    log = tmp_path / "gen.log"
    product = {**IMAGES["product"], "where": "name"}  # the way round an empty name
    root = project(
        {
            "images.toml": fake_manifest(log, {"product": product}),
            "data/products.csv": CSV + "C-1,,2\n",
        }
    )
    manifest = root / "images.toml"

    async def edit(script: Script, fields: dict[str, object]) -> object:
        manifest.write_text(fake_manifest(log, {"product": {**IMAGES["product"], **fields}}))
        await script.queue.put({manifest})
        return await script.next_round()

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            assert sorted((await script.next_round()).changed) == ["product[B-1]", "product[T-1]"]

            rows = {"file": "data/products.csv", "defaults": {"name": "a loaf"}}
            assert (await edit(script, {"rows": rows})).changed == ["product[C-1]"]

            rows = {**rows, "columns": {"label": "name"}, "defaults": {"label": "a loaf"}}
            renamed = await edit(script, {"rows": rows, "prompt": "photo of {label}"})
            assert renamed.changed == [] and not renamed.error  # the same values: nothing

            rows = {**rows, "defaults": {"label": "a bun"}}
            assert (await edit(script, {"rows": rows, "prompt": "photo of {label}"})).changed == [
                "product[C-1]"
            ]

            rows = {**rows, "columns": {"label": "nmae"}}
            broken = await edit(script, {"rows": rows, "prompt": "photo of {label}"})
            assert "images.product.rows.columns.label: data/products.csv has no column 'nmae'" in (
                broken.error
            )

    asyncio.run(scenario())
    assert sorted(generation_log(log)) == [
        "product[B-1]",
        "product[C-1]",
        "product[C-1]",
        "product[T-1]",
    ]


def test_past_the_systems_limit_on_watches_watch_polls_instead(project, tmp_path, monkeypatch):
    """A `**` over many folders can pass inotify's limit (8,192 watches on older
    systems): watchfiles then raises OSError, which ended watch. It now says so once
    and watches by polling."""
    import watchfiles

    real = watchfiles.awatch
    asked: list[object] = []

    def limited(*paths, force_polling=None, **options):
        asked.append(force_polling)
        if not force_polling:
            raise OSError("OS file watch limit reached. about [...]")
        return real(*paths, force_polling=True, poll_delay_ms=50, **options)

    monkeypatch.setattr(watchfiles, "awatch", limited)
    manifest = fake_manifest(tmp_path / "log", {"cover": IMAGES["cover"]}).replace(
        'backend = "fake"', 'backend = "preview"'
    )
    root = project({"images.toml": manifest, "posts/a.md": "---\ntitle: A\n---\n"})

    async def scenario() -> None:
        async with running_watch(root, files=True) as (script, out, watcher):
            await script.next_round()
            await asyncio.sleep(0.5)  # the watcher is polling
            (root / "posts/b.md").write_text("---\ntitle: B\n---\n")
            assert (await script.next_round(timeout=5)).changed == ["cover[b]"]
        assert out.getvalue().count("limit on watched folders is reached") == 1
        assert asked[0] is None and asked[1] is True

    asyncio.run(scenario())


def test_an_edited_row_of_rows_with_a_matrix_remakes_only_its_images(project, fake_site, tmp_path):
    log = tmp_path / "gen.log"
    product = {
        **IMAGES["product"],
        "matrix": {"shot": ["hero", "thumb"]},
        "prompt": "{shot} photo of {name}",
        "output": "img/{sku}-{shot}.png",
    }
    root = project(
        {"images.toml": fake_manifest(log, {"product": product}), "data/products.csv": CSV}
    )
    data = root / "data/products.csv"

    async def scenario() -> None:
        async with running_watch(root) as (script, out, watcher):
            first = await script.next_round()
            assert sorted(first.changed) == [
                "product[B-1,hero]",
                "product[B-1,thumb]",
                "product[T-1,hero]",
                "product[T-1,thumb]",
            ]
            data.write_text(CSV.replace("Sourdough", "Rye bread").replace(",4", ",9"))
            await script.queue.put({data})
            second = await script.next_round()
            assert sorted(second.changed) == ["product[B-1,hero]", "product[B-1,thumb]"]

            data.write_text(CSV.replace("T-1,", '"T,1",'))  # a comma in an id: said, watch goes on
            await script.queue.put({data})
            assert "id column 'sku': 'T,1' has a comma" in (await script.next_round()).error

    asyncio.run(scenario())
    assert sorted(generation_log(log)) == [
        "product[B-1,hero]",
        "product[B-1,hero]",
        "product[B-1,thumb]",
        "product[B-1,thumb]",
        "product[T-1,hero]",
        "product[T-1,thumb]",
    ]
