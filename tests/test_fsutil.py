"""The small filesystem helpers of the base layer."""

from __future__ import annotations

import tracemalloc

from nebula_build.fsutil import atomic_stream, read_regular


def test_reading_a_small_file_allocates_what_it_holds_not_the_limit(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b"{}" * 100)
    tracemalloc.start()
    try:
        data = read_regular(path, limit=1 << 30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == b"{}" * 100
    assert peak < 1 << 20


def test_a_file_over_the_limit_is_not_read(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b"x" * 101)
    assert read_regular(path, limit=100) is None
    assert read_regular(path, limit=101) == b"x" * 101


def test_a_stream_replaces_the_file_only_when_it_completes(tmp_path):
    path = tmp_path / "images.lock"
    path.write_bytes(b"old")
    try:
        with atomic_stream(path) as handle:
            handle.write(b"new, half")
            raise RuntimeError("killed mid-write")
    except RuntimeError:
        pass
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["images.lock"]
    with atomic_stream(path) as handle:
        handle.write(b"new, ")
        handle.write(b"whole")
    assert path.read_bytes() == b"new, whole"
