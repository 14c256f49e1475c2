"""Watch on a large project: an edit round's lock and file index cost O(changed)."""

from __future__ import annotations

import asyncio
import io

import pytest

from nebula_build.state import fileindex, lockfile
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.project import Project
from tests.conftest import fake_manifest
from tests.live.scripted import Script, make_watcher

COUNT = 2000


def test_an_edit_round_reads_no_lock_and_writes_only_what_changed(
    project, fake_site, tmp_path, monkeypatch
):
    log = tmp_path / "gen.log"
    images = {
        f"s{n:04}": {"prompt": f"sprite {n}", "seed": n, "output": f"out/{n // 100}/s{n:04}.png"}
        for n in range(COUNT)
    }
    root = project({"images.toml": fake_manifest(log, images)})
    manifest = root / "images.toml"
    state = Project(root, manifest)
    monkeypatch.setattr(lockfile, "SNAPSHOT_QUIET", 0.0)
    reads: list[str] = []
    formatted: list[str] = []
    index_writes: list[str] = []
    real_read, real_table = lockfile.read_from_disk, lockfile._table
    real_stream = fileindex.atomic_stream

    def counted_read(p: Project) -> tuple[lockfile.Entries, bytes | None]:
        reads.append(p.lock_path.name)
        return real_read(p)

    def counted_table(name: str, entry: lockfile.LockEntry) -> str:
        formatted.append(name)
        return real_table(name, entry)

    def counted_stream(path, **kw):  # type: ignore[no-untyped-def]
        index_writes.append(path.name)
        return real_stream(path, **kw)

    monkeypatch.setattr(lockfile, "read_from_disk", counted_read)
    monkeypatch.setattr(lockfile, "_table", counted_table)
    monkeypatch.setattr(fileindex, "atomic_stream", counted_stream)

    async def scenario() -> None:
        script = Script()
        watcher = make_watcher(root, script, io.StringIO())
        task = asyncio.create_task(watcher.run(script.changes()))
        first = await script.next_round(timeout=180)
        assert len(first.changed) == COUNT
        for take in range(1, 4):
            reads.clear(), formatted.clear(), index_writes.clear()
            images["s1000"]["prompt"] = f"sprite 1000, take {take}"
            manifest.write_text(fake_manifest(log, images))
            await script.queue.put({manifest})
            edited = await script.next_round()
            assert edited.changed == ["s1000"]
            assert reads == []  # the lock stayed in memory
            assert formatted == ["s1000"]  # one table spliced in, none formatted besides
            assert index_writes == []  # the index's changed rows were appended
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    lockfile.wait_for_snapshots()
    monkeypatch.undo()
    text = state.lock_path.read_text()
    assert lockfile.dumps(lockfile.loads(text)) == text  # what a full rewrite gives
    assert lockfile.loads(text)["s1000"].params["prompt"] == "sprite 1000, take 3"
    assert state.file_index_path.with_name(fileindex.JOURNAL_NAME).exists()
    lockfile._held.clear()  # the next command, another process
    fileindex._held.clear()
    assert lockfile.read(state) == lockfile.loads(text)  # from the snapshot written when idle
    index = FileIndex(root, state.file_index_path)
    assert index.digest("out/10/s1000.png") == index._entries["out/10/s1000.png"][4]
    assert not index._dirty  # the journal's rows were current: nothing re-hashed
