"""The content cache: every entry carries its digest and is checked against it when read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from nebula_build.state.cache import CachedImage, CorruptEntryError, Store

KEY_A = "a" * 64
KEY_B = "b" * 64


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache")


def blob(store: Store, key: str) -> Path:
    return store.root / key[:2] / key


def test_an_entry_reads_back_with_its_digest_and_seed(store):
    digest = store.put(KEY_A, b"original bytes", seed=7)
    assert digest == hashlib.sha256(b"original bytes").hexdigest()
    assert store.get(KEY_A) == CachedImage(b"original bytes", 7, digest, ours=True)
    meta = json.loads(blob(store, KEY_A).with_suffix(".json").read_text())
    assert meta == {"key": KEY_A, "seed": 7, "sha256": digest, "mac": meta["mac"]}
    assert len(meta["mac"]) == 64
    assert store.has(KEY_A) and list(store.keys()) == [KEY_A]


def test_a_missing_entry_is_none(store):
    assert store.get(KEY_A) is None


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:5])


def extend(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


@pytest.mark.parametrize("damage", [flip, truncate, extend])
def test_damaged_bytes_are_reported_and_removed_never_returned(store, damage):
    store.put(KEY_A, b"original bytes, long enough to flip", seed=None)
    damage(blob(store, KEY_A))
    with pytest.raises(CorruptEntryError, match="do not match their digest"):
        store.get(KEY_A)
    assert not store.has(KEY_A)
    assert not blob(store, KEY_A).with_suffix(".json").exists()
    assert store.get(KEY_A) is None  # now a plain miss


def test_another_keys_bytes_are_not_this_keys(store):
    store.put(KEY_A, b"bytes of a")
    store.put(KEY_B, b"bytes of b")
    blob(store, KEY_A).write_bytes(blob(store, KEY_B).read_bytes())
    with pytest.raises(CorruptEntryError, match="do not match"):
        store.get(KEY_A)
    assert store.get(KEY_B) is not None


def test_another_keys_whole_entry_is_not_this_keys(store):
    """Bytes and metadata copied together match each other, not the key asked for."""
    store.put(KEY_A, b"bytes of a")
    store.put(KEY_B, b"bytes of b")
    for suffix in ("", ".json"):
        source = blob(store, KEY_B).with_suffix(suffix) if suffix else blob(store, KEY_B)
        target = blob(store, KEY_A).with_suffix(suffix) if suffix else blob(store, KEY_A)
        target.write_bytes(source.read_bytes())
    with pytest.raises(CorruptEntryError, match="recorded for another key"):
        store.get(KEY_A)
    assert not store.has(KEY_A)


@pytest.mark.parametrize(
    "meta",
    [b'{"seed": 3}', b"", b"not json", b"[1, 2]", b'{"seed": "3", "sha256": 12}', None],
    ids=["0.2 layout", "empty", "not json", "not an object", "odd types", "missing"],
)
def test_an_entry_without_a_digest_comes_back_unchecked_for_the_engine_to_verify(store, meta):
    path = blob(store, KEY_A)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"bytes from 0.2")
    if meta is not None:
        path.with_suffix(".json").write_bytes(meta)
    cached = store.get(KEY_A)
    assert cached is not None and cached.data == b"bytes from 0.2" and cached.digest is None
    assert cached.seed == (3 if meta == b'{"seed": 3}' else None)


def test_seal_records_the_digest_of_bytes_already_there(store):
    path = blob(store, KEY_A)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"bytes from 0.2")
    path.with_suffix(".json").write_text('{"seed": 3}')
    digest = store.seal(KEY_A, b"bytes from 0.2", seed=3)
    assert store.get(KEY_A) == CachedImage(b"bytes from 0.2", 3, digest)


def test_metadata_files_are_not_keys_and_count_in_the_size(store):
    store.put(KEY_A, b"12345", seed=1)
    assert list(store.keys()) == [KEY_A]
    meta = blob(store, KEY_A).with_suffix(".json").stat().st_size
    assert store.size(KEY_A) == 5 + meta
    assert store.remove(KEY_A) == 5 + meta
    assert not store.has(KEY_A)


def test_an_output_record_keeps_the_files_of_every_image_that_shares_it(store):
    """Images with one spec share its output key, and each writes its own paths."""
    store.record_output(KEY_A, {"out/a.png": "1" * 64}, {"format": "png"})
    store.record_output(KEY_A, {"out/b.png": "2" * 64}, {"format": "png"})
    store.record_output(KEY_A, {"out/a.png": "3" * 64}, {"format": "png"})
    assert store.output_files(KEY_A) == {"out/b.png": "2" * 64, "out/a.png": "3" * 64}
    assert store.output_params(KEY_A) == {"format": "png"}


def test_an_output_record_keeps_the_newest_files_within_its_limits(store):
    for n in range(300):
        store.record_output(KEY_A, {f"out/{n}.png": f"{n:064}"})
    files = store.output_files(KEY_A)
    assert len(files) == 256 and "out/299.png" in files and "out/43.png" not in files
    long = "deep/" * 250  # 1,250 characters: 256 such paths are over the read limit
    for n in range(300):
        store.record_output(KEY_B, {f"{long}{n}.png": f"{n:064}"})
    files = store.output_files(KEY_B)
    assert 100 < len(files) < 256 and f"{long}299.png" in files
