"""Watch and the files made from the images (an atlas's sheet, frame map and exports,
the asset manifest): one deleted by hand is built again by a round of its own; the
round's own writes start none."""

from __future__ import annotations

import time

import pytest

from tests.live.test_watch_hand_edits import SITE, _until
from tests.live.watching import watching

ATLAS = (
    SITE.replace('output = "images/banner.jpg"', 'output = "images/banner.png"')
    + """
[atlases.sheet]
images = ["hero", "banner"]
output = "sheets/sheet.png"

[assets]
manifest = "data/images.json"
"""
)


@pytest.mark.slow
@pytest.mark.parametrize("deleted", ["sheets/sheet.png", "sheets/sheet.json", "data/images.json"])
def test_watch_builds_a_deleted_derived_file_again(project, deleted):
    root = project({"images.toml": ATLAS})
    target = root / deleted
    with watching(root) as run:
        _until(lambda: run.printed("round 1:"), "round 1")
        assert target.exists()
        time.sleep(1.5)  # the folders are watched within a second of the round
        first = target.read_bytes()
        target.unlink()
        _until(target.exists, f"{deleted} built again")
        assert target.read_bytes() == first
        time.sleep(1.5)  # time for a round its own writes would start, if they did
    out, err = run.out, run.err
    assert run.returncode == 0, err
    rounds = [line.split(":")[0] for line in out.splitlines() if line.startswith("round ")]
    assert rounds == ["round 1", "round 2"], out
    assert "Traceback" not in err


def test_a_pick_that_fails_still_checks_the_files_changed_while_it_ran(project, tmp_path):
    import asyncio
    import io

    from nebula_build.errors import UserError
    from tests.live.scripted import Script, make_watcher

    root = project({"images.toml": ATLAS})
    sheet = root / "sheets/sheet.png"

    async def scenario() -> None:
        script, out = Script(), io.StringIO()
        watcher = make_watcher(root, script, out)
        task = asyncio.create_task(watcher.run(script.changes()))
        await script.next_round()
        first = sheet.read_bytes()
        sheet.unlink()  # as if while the pick ran: its event came in then
        watcher._derived_suspects.add("sheets/sheet.png")
        with pytest.raises(UserError):
            await watcher.pick("hero", 5)
        await script.next_round()  # the sheet's own round
        assert sheet.read_bytes() == first
        task.cancel()

    asyncio.run(scenario())


def test_a_derived_file_edited_by_hand_is_a_conflict_said_once(project):
    import asyncio
    import io

    from tests.live.scripted import Script, make_watcher

    root = project({"images.toml": ATLAS})
    sheet, manifest = root / "sheets/sheet.png", root / "images.toml"

    async def scenario() -> list[str]:
        script, out = Script(), io.StringIO()
        watcher = make_watcher(root, script, out)
        task = asyncio.create_task(watcher.run(script.changes()))
        await script.next_round()
        sheet.write_bytes(sheet.read_bytes() + b"by hand")
        await script.queue.put({sheet})
        second = await script.next_round()
        assert second.conflicts == ["atlas sheet"] and not second.failed
        manifest.write_text(ATLAS.replace("a long banner", "a wide banner"))
        await script.queue.put({manifest})
        third = await script.next_round()
        assert third.conflicts == ["atlas sheet"] and third.changed == ["banner"]
        sheet.unlink()
        await script.queue.put({sheet})
        fourth = await script.next_round()
        assert fourth.conflicts == [] and not fourth.failed
        task.cancel()
        return out.getvalue().splitlines()

    lines = asyncio.run(scenario())
    assert [line for line in lines if line.startswith("conflict:")] == [
        "conflict: atlas sheet: sheets/sheet.png: changed by hand: kept, not overwritten; "
        "delete it to have it built again, or restart watch with --force to replace it "
        "(a copy goes to .nebula-build/backup/)"
    ]
    assert sheet.exists() and not sheet.read_bytes().endswith(b"by hand")
    assert [line for line in lines if line.startswith("built atlas")] == [
        "built atlas sheet sheets/sheet.png"
    ] * 2


def test_a_sheet_edited_after_its_round_built_it_is_said_at_once(project):
    """An edit that lands while the round still works, after the sheet was written:
    the round's end finds the sheet is not as it wrote it and starts the next one."""
    import asyncio
    import io

    from tests.live.scripted import Script, make_watcher

    root = project({"images.toml": ATLAS})
    sheet = root / "sheets/sheet.png"

    async def scenario() -> list[str]:
        script, out = Script(), io.StringIO()
        watcher = make_watcher(root, script, out)
        task = asyncio.create_task(watcher.run(script.changes()))
        await script.next_round()
        async with watcher._busy:  # as if the round still ran
            sheet.write_bytes(sheet.read_bytes() + b"by hand")
            await script.queue.put({sheet})
            await asyncio.sleep(0.2)
        watcher._check_suspects()  # what the end of a round does
        second = await script.next_round()
        assert second.conflicts == ["atlas sheet"]
        task.cancel()
        return out.getvalue().splitlines()

    lines = asyncio.run(scenario())
    assert any(line.startswith("conflict: atlas sheet: sheets/sheet.png") for line in lines)
