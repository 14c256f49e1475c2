"""images.lock: deterministic, round-trips, snapshot, journal folding, linear rewrites."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nebula_build.errors import LockfileError
from nebula_build.state.lockfile import (
    LockEntry,
    LockWriter,
    dumps,
    loads,
    read,
    recover,
    write,
    write_streamed,
)
from nebula_build.state.project import Project

names = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
digests = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
paths = st.tuples(
    st.lists(names, min_size=1, max_size=3).map("/".join),
    st.sampled_from([".png", ".webp", ".jpg", ".jpeg", ".avif", ".PNG"]),
).map("".join)
scalars = st.one_of(
    st.text(max_size=40),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
)
entries = st.builds(
    LockEntry,
    backend=names,
    model=st.text(
        st.characters(categories=["L", "N", "P"], include_characters=" "), min_size=1, max_size=30
    ),
    output=paths,
    digest=digests,
    generation_key=digests,
    output_key=digests,
    params=st.dictionaries(st.text(min_size=1, max_size=12), scalars, max_size=5),
    seed=st.none() | st.integers(0, 2**32 - 1),
)


@given(st.dictionaries(names, entries, max_size=5))
def test_lock_text_round_trips_through_a_real_toml_parser(lock):
    text = dumps(lock)
    assert tomllib.loads(text)["version"] == 1
    assert loads(text) == lock
    assert dumps(loads(text)) == text


def _hex(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def _entry(n: int) -> LockEntry:
    return LockEntry(
        backend="preview",
        model="m",
        output=f"{n}.png",
        digest=_hex(f"d{n}"),
        generation_key=_hex(f"g{n}"),
        output_key=_hex(f"o{n}"),
        params={"prompt": "p"},
        seed=n,
    )


def test_lock_is_sorted_with_header_and_rewritten_only_on_change(tmp_path):
    project = Project(tmp_path, tmp_path / "images.toml")
    assert write(project, {"b": _entry(2), "a": _entry(1)})
    text = project.lock_path.read_text()
    assert text.startswith("# This file is written by nebula-build: do not edit it by hand.")
    assert text.index("[images.a]") < text.index("[images.b]")
    mtime = project.lock_path.stat().st_mtime_ns
    assert not write(project, {"a": _entry(1), "b": _entry(2)})
    assert project.lock_path.stat().st_mtime_ns == mtime
    assert not write(Project(tmp_path / "x", tmp_path / "x/images.toml"), {})


def test_snapshot_is_used_only_while_it_matches_the_lock(tmp_path):
    project = Project(tmp_path, tmp_path / "images.toml")
    write(project, {"a": _entry(1)})
    assert project.lock_snapshot_path.exists()
    assert read(project) == {"a": _entry(1)}
    # someone (git checkout) replaces the lock: the stale snapshot must be ignored
    project.lock_path.write_text(dumps({"b": _entry(2)}))
    assert read(project) == {"b": _entry(2)}


def test_corrupt_or_future_lock_is_a_clear_error(tmp_path):
    project = Project(tmp_path, tmp_path / "images.toml")
    project.lock_path.write_text("version = [\n")
    with pytest.raises(LockfileError, match=r"not valid TOML: Invalid value \(at end of"):
        read(project)
    project.lock_path.write_text("version = 1\n[images.a\n")
    with pytest.raises(LockfileError, match="not valid TOML: line 2, column 10: Expected ']'"):
        read(project)
    project.lock_path.write_text("version = 9\n")
    with pytest.raises(LockfileError, match="version 9"):
        read(project)


def test_journal_left_by_a_crash_is_folded_in_and_a_torn_line_ignored(tmp_path):
    project = Project(tmp_path, tmp_path / "images.toml")
    write(project, {"old": _entry(0)})
    writer = LockWriter(project, {"old": _entry(0)}, min_interval=3600)

    async def record() -> None:
        await writer.set("a", _entry(1))
        await writer.delete("old")

    asyncio.run(record())
    assert project.lock_path.read_text().count("[images.") == 1  # not rewritten yet
    with project.journal_path.open("ab") as journal:
        journal.write(b'{"op": "set", "image": "torn", "ent')  # a write cut by the crash
    writer._journal.close()  # the process "died": nothing else was written
    entries, folded = recover(project)
    assert folded and entries == {"a": _entry(1)}
    assert loads(project.lock_path.read_text()) == {"a": _entry(1)}
    assert not project.journal_path.exists()


def test_entries_recorded_together_are_folded_in_together(tmp_path):
    """Names that take over each other's entries are recorded with what keeps every
    entry under one name, in one journal line: a crash, or a power loss that keeps only
    part of the write, leaves all of them or none."""
    project = Project(tmp_path, tmp_path / "images.toml")
    before = {"a": _entry(0), "b": _entry(1)}
    write(project, before)
    writer = LockWriter(project, before, min_interval=3600)
    asyncio.run(writer.record({"b": _entry(2), "c": _entry(1), "a": None}))
    writer._journal.close()
    journal = project.journal_path.read_bytes()
    after = {"b": _entry(2), "c": _entry(1)}
    for cut in range(len(journal) + 1):
        write(project, before)
        project.journal_path.write_bytes(journal[:cut])
        entries, _ = recover(project)
        assert entries == (after if cut >= len(journal) - 1 else before), cut


def test_writer_rewrites_the_lock_at_most_about_once_a_second(tmp_path):
    project = Project(tmp_path, tmp_path / "images.toml")
    now = [0.0]
    writer = LockWriter(project, {}, min_interval=1.0, clock=lambda: now[0])
    rewrites = 0
    original = write_streamed

    def counting_write(*args, **kwargs):
        nonlocal rewrites
        rewrites += 1
        return original(*args, **kwargs)

    from nebula_build.state import lockfile

    lockfile.write_streamed = counting_write
    try:

        async def record() -> None:
            for n in range(100):
                now[0] += 0.05  # 20 images a second for 5 seconds
                await writer.set(f"i{n}", _entry(n))

        asyncio.run(record())
        writer.close()
    finally:
        lockfile.write_streamed = original
    assert 4 <= rewrites <= 6 and writer.rewrites == rewrites
    assert len(loads(project.lock_path.read_text())) == 100
    assert not project.journal_path.exists()


def test_entry_with_missing_field_names_it(tmp_path):
    with pytest.raises(LockfileError, match=r"images\.a: `digest` must be a sha256 digest"):
        loads(
            'version = 1\n[images.a]\nbackend = "p"\nmodel = "m"\noutput = "a.png"\n'
            f'generation_key = "{_hex("g")}"\noutput_key = "{_hex("o")}"\n'
        )


def test_each_manifest_has_its_own_lock_and_state(tmp_path):
    default = Project(tmp_path, tmp_path / "images.toml")
    assert default.lock_path == tmp_path / "images.lock"
    assert default.state_dir == tmp_path / ".nebula-build"
    other = Project(tmp_path / "sub", tmp_path / "sub" / "site.toml")
    assert other.lock_path == Path(tmp_path / "sub" / "site.lock")
    assert other.state_dir == tmp_path / "sub" / ".nebula-build" / "manifests" / "site"


def test_records_arriving_together_share_one_fsync(tmp_path, monkeypatch):
    project = Project(tmp_path, tmp_path / "images.toml")
    writer = LockWriter(project, {}, min_interval=3600)
    from nebula_build.state import lockfile

    syncs = 0
    real_fsync = lockfile.os.fsync

    def counting_fsync(fd):
        nonlocal syncs
        syncs += 1
        real_fsync(fd)

    monkeypatch.setattr(lockfile.os, "fsync", counting_fsync)

    async def record() -> None:
        await asyncio.gather(*(writer.set(f"i{n}", _entry(n)) for n in range(50)))

    asyncio.run(record())
    assert 1 <= syncs < 50
    lines = project.journal_path.read_bytes().splitlines()
    assert len(lines) == 50  # every record is in the journal before set() returns
    writer.close()
    assert len(loads(project.lock_path.read_text())) == 50


def test_rewrites_grow_apart_as_they_get_slower_so_they_stay_a_small_share(tmp_path, monkeypatch):
    project = Project(tmp_path, tmp_path / "images.toml")
    now = [0.0]
    writer = LockWriter(project, {}, min_interval=1.0, max_share=0.03, clock=lambda: now[0])
    from nebula_build.state import lockfile

    original = lockfile.write_streamed

    def slow_write(*args, **kwargs):
        now[0] += 0.5  # a big lock: each rewrite takes half a second
        return original(*args, **kwargs)

    monkeypatch.setattr(lockfile, "write_streamed", slow_write)

    async def record() -> None:
        for n in range(400):
            now[0] += 0.1  # ten images a second for 40 seconds
            await writer.set(f"i{n}", _entry(n))

    asyncio.run(record())
    during = writer.rewrites
    # once a second would be 40 rewrites (half the run); 3% of 40 s allows 2 or 3
    assert 1 <= during <= 3
    assert writer.rewrite_seconds / now[0] <= 0.05
    writer.close()
    assert writer.rewrites == during + 1
    assert len(loads(project.lock_path.read_text())) == 400
    assert not project.journal_path.exists()


def test_the_last_rewrite_writes_the_snapshot_the_next_read_takes(tmp_path, monkeypatch):
    project = Project(tmp_path, tmp_path / "images.toml")
    writer = LockWriter(project, {}, min_interval=0.0)

    async def record() -> None:
        for n in range(5):
            await writer.set(f"i{n}", _entry(n))

    asyncio.run(record())
    assert not project.lock_snapshot_path.exists()  # rewrites during the run skip it
    writer.close()
    from nebula_build.state import lockfile

    def no_toml(*args):
        raise AssertionError("the snapshot should have been read")

    monkeypatch.setattr(lockfile, "loads", no_toml)
    assert read(project) == {f"i{n}": _entry(n) for n in range(5)}


def test_a_changed_image_changes_only_its_own_lines_of_the_lock():
    entries = {f"img-{n:03}": _entry(n) for n in range(200)}
    before = dumps(entries).splitlines()
    changed = dict(entries)
    changed["img-100"] = dataclasses.replace(
        entries["img-100"], digest=_hex("new"), params={"prompt": "a new prompt", "seed": 7}
    )
    after = dumps(changed).splitlines()
    diff = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    # one line out and one in per changed field (digest and params): a pull request's
    # diff is a few lines per changed image, however big the lock
    assert len(diff) == 4
    assert {line[1:].split(" = ")[0] for line in diff} == {"digest", "params"}


def test_an_entry_without_variants_or_a_record_shares_one_empty_mapping():
    from nebula_build.state.lockfile import NONE_RECORDED, LockEntry

    fields = {
        "backend": "preview",
        "model": "m",
        "output": "out/a.png",
        "digest": "0" * 64,
        "generation_key": "1" * 64,
        "output_key": "2" * 64,
        "params": {"prompt": "a"},
    }
    entry = LockEntry.from_checked(fields)
    assert entry.variants is NONE_RECORDED and entry.made_with is NONE_RECORDED
    assert LockEntry(**fields).variants is NONE_RECORDED
    assert entry == LockEntry(**fields, variants={}, made_with={})
    assert entry.to_dict() == fields
