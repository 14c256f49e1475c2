"""The stat cache of file digests (`.nebula-build/files.json`); a retained one (watch)
loads once and saves its changed rows to a journal."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from nebula_build.state import fileindex
from nebula_build.state.fileindex import JOURNAL_NAME, FileIndex


def _row(path, digest: str) -> list[object]:
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, digest]


def test_a_file_whose_stat_matches_its_row_is_not_read_again(tmp_path):
    (tmp_path / "a.png").write_bytes(b"pixels")
    index_path = tmp_path / "files.json"
    index_path.write_text(json.dumps({"a.png": _row(tmp_path / "a.png", "recorded")}))
    assert FileIndex(tmp_path, index_path).digest("a.png") == "recorded"
    (tmp_path / "a.png").write_bytes(b"other pixels")
    assert (
        FileIndex(tmp_path, index_path).digest("a.png")
        == hashlib.sha256(b"other pixels").hexdigest()
    )


def test_the_index_is_read_on_first_use_not_when_made(tmp_path):
    """A plan makes its index before parsing the manifest: read then, its rows (~80 MB
    at 100k files) would add to the parse's peak instead of reusing what it frees."""
    (tmp_path / "a.png").write_bytes(b"pixels")
    index_path = tmp_path / "files.json"
    files = FileIndex(tmp_path, index_path)
    index_path.write_text(json.dumps({"a.png": _row(tmp_path / "a.png", "recorded")}))
    assert files.digest("a.png") == "recorded"


def test_a_malformed_index_is_no_index(tmp_path):
    (tmp_path / "a.png").write_bytes(b"pixels")
    index_path = tmp_path / "files.json"
    for text in ("{not json", "[1, 2]", json.dumps({"a.png": [1, 2, "x"]})):
        index_path.write_text(text)
        assert (
            FileIndex(tmp_path, index_path).digest("a.png") == hashlib.sha256(b"pixels").hexdigest()
        )


@pytest.fixture
def files(tmp_path):
    for n in range(40):
        (tmp_path / f"f{n}.png").write_bytes(b"x" * n)
    index_path = tmp_path / ".nebula-build" / "files.json"
    index_path.parent.mkdir()
    yield tmp_path, index_path
    fileindex._retained.discard(index_path)
    fileindex._held.pop(index_path, None)


def _hashed(index: FileIndex, names: range) -> dict[str, str | None]:
    return {f"f{n}.png": index.digest(f"f{n}.png") for n in names}


def test_a_retained_index_appends_rows_and_loads_from_memory(files, monkeypatch):
    root, index_path = files
    fileindex.retain(index_path)
    first = FileIndex(root, index_path)
    digests = _hashed(first, range(40))
    first.save()  # the first save writes the whole index
    assert json.loads(index_path.read_bytes()).keys() == digests.keys()
    monkeypatch.setattr(fileindex, "read_regular", lambda *a, **k: pytest.fail("read again"))
    second = FileIndex(root, index_path)
    (root / "f3.png").write_bytes(b"changed")
    second.forget("f5.png")
    assert second.digest("f3.png") != digests["f3.png"]
    second.save()
    journal = (index_path.parent / JOURNAL_NAME).read_text().splitlines()
    assert [json.loads(line)[0] for line in journal] == ["f3.png", "f5.png"]
    monkeypatch.undo()
    fileindex._held.clear()  # another process: the index and its journal, folded
    again = FileIndex(root, index_path)
    assert "f5.png" not in again._entries
    assert again.digest("f3.png") == second.digest("f3.png") and again._changed == set()


def test_the_journal_is_folded_in_once_it_grows_and_a_torn_line_is_skipped(files, monkeypatch):
    root, index_path = files
    monkeypatch.setattr(fileindex, "_JOURNAL_ROWS", 4)
    fileindex.retain(index_path)
    index = FileIndex(root, index_path)
    _hashed(index, range(40))
    index.save()
    journal = index_path.parent / JOURNAL_NAME
    for n in range(4):
        (root / f"f{n}.png").write_bytes(b"new")
        index.digest(f"f{n}.png")
        index.save()
        assert journal.exists()
    with journal.open("a") as handle:
        handle.write('["f9.png", 1, 2')  # cut short by a crash
    fileindex._held.clear()
    reloaded = FileIndex(root, index_path)
    assert reloaded.digest("f3.png") == index.digest("f3.png") and reloaded._changed == set()
    for n in range(5, 16):  # past a quarter of the index: written whole again
        (root / f"f{n}.png").write_bytes(b"newer")
        reloaded.digest(f"f{n}.png")
    reloaded.save()
    assert not journal.exists()
    assert json.loads(index_path.read_bytes())["f15.png"][4] == reloaded.digest("f15.png")


def test_an_index_changed_on_disk_is_read_again(files):
    root, index_path = files
    fileindex.retain(index_path)
    index = FileIndex(root, index_path)
    _hashed(index, range(3))
    index.save()
    index_path.write_text(json.dumps({"other.png": [1, 2, 3, 4, "0" * 64]}))
    assert FileIndex(root, index_path)._entries.keys() == {"other.png"}


def test_rows_appended_after_a_torn_journal_line_are_kept(files):
    """A run killed mid-append leaves half a line: the next rows start a line of their
    own, so a fresh process still reads them."""
    root, index_path = files
    fileindex.retain(index_path)
    index = FileIndex(root, index_path)
    _hashed(index, range(3))
    index.save()
    (root / "f1.png").write_bytes(b"changed")
    index.digest("f1.png")
    index.save()
    journal = index_path.with_name(JOURNAL_NAME)
    with journal.open("ab") as handle:
        handle.write(b'["f2.png", 1, 2')  # cut short
    (root / "f3.png").write_bytes(b"changed too")
    index = FileIndex(root, index_path)
    index.digest("f3.png")
    index.save()
    fileindex._held.pop(index_path, None)
    rows = FileIndex(root, index_path)._entries
    assert rows["f3.png"][-1] == FileIndex(root, root / "other.json").digest("f3.png")


def test_the_index_is_written_in_pieces_as_one_json_text(tmp_path, monkeypatch):
    monkeypatch.setattr(fileindex, "_PIECE", 3)
    index_path = tmp_path / "files.json"
    index = FileIndex(tmp_path, index_path)
    for n in range(8):
        (tmp_path / f"é{n}.png").write_bytes(bytes([n]))
        index.record(f"é{n}.png", data=bytes([n]))
    index.save()
    rows = {path: list(row) for path, row in index._entries.items()}
    assert index_path.read_bytes() == json.dumps(rows).encode()


def test_seen_gives_the_signatures_of_the_rows_looked_at(tmp_path):
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "b.png").write_bytes(b"b")
    index = FileIndex(tmp_path, tmp_path / "files.json")
    index.digest("a.png")
    index.record("b.png", data=b"b")
    assert index.seen() == {
        name: tuple(_row(tmp_path / name, "")[:4]) for name in ("a.png", "b.png")
    }
