"""The stat cache of file digests (`.nebula-build/files.json`)."""

from __future__ import annotations

import hashlib
import json
import os

from nebula_build.state.fileindex import FileIndex


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
