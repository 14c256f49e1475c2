"""A retained lock (watch): read once, rewritten by splicing, byte for byte a full rewrite."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebula_build.state import lockfile
from nebula_build.state.lockfile import (
    DrawRecord,
    EarlierGeneration,
    LockEntry,
    LockWriter,
    dumps,
    read,
    recover,
    retain,
    write,
)
from nebula_build.state.project import Project


def _hex(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def _entry(n: int, prompt: str = "p") -> LockEntry:
    return LockEntry(
        backend="preview",
        model="m",
        output=f"out/{n}.png",
        digest=_hex(f"d{n}{prompt}"),
        generation_key=_hex(f"g{n}{prompt}"),
        output_key=_hex(f"o{n}{prompt}"),
        params={"prompt": prompt, "seed": n},
        draws=(DrawRecord(_hex("a"), _hex("b")),) if n % 3 == 0 else (),
        history=(EarlierGeneration(_hex("h"), _hex("i"), "2026-01-01T00:00:00Z", "x", "m", {}),)
        if n % 4 == 0
        else (),
    )


@pytest.fixture(autouse=True)
def quick_snapshots(monkeypatch):
    monkeypatch.setattr(lockfile, "SNAPSHOT_QUIET", 0.0)


@pytest.fixture
def retained(tmp_path, monkeypatch):
    """A retained project whose disk reads are counted; forgotten afterwards."""
    project = Project(tmp_path, tmp_path / "images.toml")
    reads: list[int] = []
    real = lockfile.read_from_disk

    def counted(p: Project) -> tuple[lockfile.Entries, bytes | None]:
        reads.append(1)
        return real(p)

    monkeypatch.setattr(lockfile, "read_from_disk", counted)
    retain(project)
    yield project, reads
    lockfile.wait_for_snapshots()
    lockfile._retained.discard(project.lock_path)
    lockfile._held.pop(project.lock_path, None)


NAMES = ["a", "b-1", "with space", "z", "é", "m_2"]
ops = st.lists(
    st.tuples(st.sampled_from([*NAMES, "new", "zz", "0"]), st.integers(-1, 5)), max_size=12
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(ops, min_size=1, max_size=4))
def test_a_spliced_lock_equals_a_full_rewrite_after_any_edits(tmp_path_factory, edits):
    root = tmp_path_factory.mktemp("lock")
    project = Project(root, root / "images.toml")
    retain(project)
    try:
        entries = {name: _entry(n) for n, name in enumerate(NAMES)}
        write(project, entries)
        for batch in edits:
            entries = dict(entries)
            for name, change in batch:
                if change < 0:
                    entries.pop(name, None)
                else:
                    entries[name] = _entry(change, prompt=f"{name} take {change}")
            write(project, entries)
            assert project.lock_path.read_bytes() == dumps(entries).encode()
            assert read(project) == entries
    finally:
        lockfile.wait_for_snapshots()
        lockfile._retained.discard(project.lock_path)
        lockfile._held.pop(project.lock_path, None)


def test_a_round_of_edits_reads_the_lock_once_and_formats_only_what_changed(retained, monkeypatch):
    project, reads = retained
    entries = {f"i{n:04}": _entry(n) for n in range(2000)}
    write(project, entries)
    assert read(project) == entries and reads == []  # written here: never read back
    formatted: list[str] = []
    real_table = lockfile._table

    def counting(name: str, entry: LockEntry) -> str:
        formatted.append(name)
        return real_table(name, entry)

    for take in range(3):
        lock = read(project)
        lock["i0100"] = _entry(100, prompt=f"take {take}")
        lock["i2500"] = _entry(2500, prompt=f"take {take}")
        del lock[f"i{take:04}"]
        monkeypatch.setattr(lockfile, "_table", counting)
        assert write(project, lock)
        monkeypatch.setattr(lockfile, "_table", real_table)
        assert project.lock_path.read_bytes() == dumps(lock).encode()
    assert reads == []
    assert len(formatted) == 6  # the two changed tables of each round, no others


def test_a_lock_another_command_wrote_is_spliced_from_its_snapshot(retained, monkeypatch):
    project, reads = retained
    entries = {f"i{n}": _entry(n) for n in range(30)}
    lockfile._retained.discard(project.lock_path)
    lockfile.write_streamed(project, entries)  # `apply`: formatted, with its snapshot
    lockfile._held.clear()
    retain(project)  # then watch starts
    lock = read(project)
    assert reads == [1]
    formatted: list[str] = []
    real_table = lockfile._table
    monkeypatch.setattr(lockfile, "_table", lambda n, e: formatted.append(n) or real_table(n, e))
    lock["i3"] = _entry(3, prompt="again")
    write(project, lock)
    assert formatted == ["i3"]
    monkeypatch.undo()
    assert project.lock_path.read_bytes() == dumps(lock).encode()


def test_a_lock_changed_on_disk_is_read_again(retained):
    project, reads = retained
    write(project, {"a": _entry(1)})
    read(project)
    assert reads == []
    project.lock_path.write_text(dumps({"b": _entry(2)}))  # a checkout, another command
    assert read(project) == {"b": _entry(2)} and reads == [1]
    assert read(project) == {"b": _entry(2)} and reads == [1]
    write(project, {"b": _entry(2), "c": _entry(3)})  # not spliced into bytes it never wrote
    assert project.lock_path.read_bytes() == dumps({"b": _entry(2), "c": _entry(3)}).encode()


def test_the_snapshot_of_a_retained_lock_is_written_once_it_is_quiet(retained, monkeypatch):
    project, _ = retained
    monkeypatch.setattr(lockfile, "SNAPSHOT_QUIET", 0.05)
    write(project, {"a": _entry(1)})
    write(project, {"a": _entry(1), "b": _entry(2)})
    lockfile.wait_for_snapshots()
    lockfile._held.clear()  # another process
    monkeypatch.setattr(lockfile, "loads", lambda *a: pytest.fail("the snapshot was not read"))
    assert read(project) == {"a": _entry(1), "b": _entry(2)}


def test_a_crash_while_splicing_loses_no_finished_image(retained, monkeypatch):
    project, _ = retained
    before = {f"i{n}": _entry(n) for n in range(50)}
    write(project, before)
    old_bytes = project.lock_path.read_bytes()
    writer = LockWriter(project, read(project), min_interval=0.0)

    def crash(*args: object) -> str:
        raise KeyboardInterrupt  # killed between the journal's fsync and the lock's rename

    monkeypatch.setattr(lockfile, "_write_pieces", crash)
    edited = dataclasses.replace(_entry(7), params={"prompt": "edited", "seed": 7})

    async def record() -> None:
        await writer.set("i7", edited)

    with pytest.raises(KeyboardInterrupt):
        asyncio.run(record())
    monkeypatch.undo()
    assert writer._journal is not None
    writer._journal.close()  # what the killed process held
    assert project.lock_path.read_bytes() == old_bytes  # intact
    lockfile._held.clear()  # the next process
    lockfile._retained.clear()
    entries, folded = recover(project)
    assert folded and entries == {**before, "i7": edited}
    assert project.lock_path.read_bytes() == dumps(entries).encode()


def test_a_crash_after_the_splice_before_the_journal_is_emptied_loses_nothing(retained):
    project, _ = retained
    write(project, {"a": _entry(1)})
    writer = LockWriter(project, read(project), min_interval=0.0)

    async def record() -> None:
        await writer.set("b", _entry(2))

    asyncio.run(record())  # spliced, then the journal was emptied: undo the emptying
    assert writer._journal is not None
    writer._journal.close()
    line = json.dumps({"op": "set", "image": "b", "entry": _entry(2).to_dict()})
    project.journal_path.write_text(line + '\n{"op": "set", "image": "c", "en')  # and a torn one
    lockfile._held.clear()
    lockfile._retained.clear()
    entries, _ = recover(project)
    assert entries == {"a": _entry(1), "b": _entry(2)}
    assert project.lock_path.read_bytes() == dumps(entries).encode()


def test_a_hand_edit_landing_as_watch_writes_is_not_taken_for_watchs_own(retained, monkeypatch):
    """The held signature is the stat of the bytes written, taken before the names are
    sorted: an edit landing meanwhile is read again, never spliced over."""
    project, _ = retained
    write(project, {"a": _entry(1), "b": _entry(2)})
    real_hold = lockfile._hold

    def edit_by_hand_first(*args: object) -> None:
        monkeypatch.setattr(lockfile, "_hold", real_hold)
        edited = lockfile.loads(project.lock_path.read_text())
        del edited["b"]
        edited["c"] = _entry(3)
        project.lock_path.write_text(dumps(edited))
        real_hold(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(lockfile, "_hold", edit_by_hand_first)
    write(project, {"a": _entry(1, "new"), "b": _entry(2)})
    assert sorted(read(project)) == ["a", "c"]
    write(project, {**read(project), "a": _entry(1, "newer")})
    assert sorted(lockfile.loads(project.lock_path.read_text())) == ["a", "c"]


def test_the_records_of_atlases_and_the_asset_manifest_survive_splices_and_rewrites(retained):
    """A watch splices image tables into the lock it wrote last, and an apply's
    journal rewrites it whole: either keeps what `write_made` recorded."""
    from nebula_build.state.derivedrecords import AtlasRecord, Made

    project, _ = retained
    entries = {name: _entry(n) for n, name in enumerate(NAMES)}
    write(project, entries)
    made = Made({"hero": AtlasRecord("a/h.png", {"a/h.png": _hex("s"), "a/h.json": _hex("f")})})
    made = dataclasses.replace(made, asset_manifest=("web/assets.json", _hex("m")))
    assert lockfile.write_made(project, made)
    for n, name in enumerate(["new", "a", "zz"]):  # spliced: the lock is held
        entries = {**entries, name: _entry(n, prompt="again")}
        write(project, entries)
        assert lockfile.read_made(project) == made
        assert read(project) == entries
    lockfile._held.pop(project.lock_path, None)  # rewritten whole, from the disk's records
    entries.pop("a")
    lockfile.write_streamed(project, entries)
    assert lockfile.read_made(project) == made and read(project) == entries
    assert lockfile.write_made(project, Made({}))
    assert "[atlases" not in project.lock_path.read_text()
    assert "[assets]" not in project.lock_path.read_text() and read(project) == entries
