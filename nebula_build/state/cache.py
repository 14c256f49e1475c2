"""The content cache: the original bytes of every generation, by generation key.

Layout: `.nebula-build/cache/<key[:2]>/<key>` holds the original bytes (as the engine
verified them); `<key>.json` beside it holds their SHA-256, the key they belong to,
what the backend reported (the seed used, its `made_with` record) and the image they
were made for: a restore embeds the same provenance as the first encode did. `get` checks
the bytes against that digest on every read: a corrupt, truncated or swapped entry is
removed and reported, never returned. An entry written before digests were recorded
comes back with `digest=None`, for the engine to verify by decoding (and record again,
with its digest).
`outputs/<output key>` remembers the digest of the file each output key
produced, so a file already holding exactly that (a run killed between the
rename and the journal line, a copied checkout) is recognised, not a conflict,
and the output options the key stands for, so `plan` can say which changed.
It is sealed (`state/seal.py`): one this account did not write counts for nothing.
`written/` is the other way round: an empty file per (path, digest) nebula-build wrote,
named by its seal, so a file an earlier spec wrote (the lock went back: `git checkout
-- .` after a few watch rounds) is known as nebula-build's, not a hand edit.
Reverting a prompt, moving an output or changing its format reads from here
instead of paying for a new generation.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nebula_build.fsutil import atomic_write, read_regular, sha256_bytes
from nebula_build.imaging import MAX_BYTES
from nebula_build.state.seal import tag, tagged
from nebula_build.text import made_with_problem

_KEY_LENGTH = 64
#: room for the largest `made_with` record (`MADE_WITH_BYTES`) and an image's name
_META_LIMIT = 16 * 1024
#: an output key's record: its files and options (variants' paths in both)
_OUTPUT_RECORD_LIMIT = 256 * 1024
#: files an output key's record keeps from earlier writes: images that share one spec
#: share its key, and each writes its own paths
_OUTPUT_RECORD_FILES = 256
#: an image's name as an entry's metadata keeps it: within _META_LIMIT, escaped or not
_IMAGE_NAME_LIMIT = 256


def _sealed(key: str, digest: str) -> bytes:
    return f"cache entry {key} {digest}".encode()


def _sealed_output(output_key: str, record: Mapping[str, object]) -> bytes:
    return f"output {output_key} ".encode() + json.dumps(record, sort_keys=True).encode()


class CorruptEntryError(Exception):
    """A cache entry whose bytes do not match its recorded digest (flipped, truncated,
    swapped); it has been removed. The message says what was wrong, briefly."""


@dataclass(frozen=True, slots=True)
class CachedImage:
    data: bytes
    seed: int | None = None
    #: the SHA-256 the bytes were checked against; None for an entry from before digests
    digest: str | None = None
    #: written by this tool on this account (its metadata carries our seal), not by
    #: a checkout: only such entries are offered to a shared remote cache
    ours: bool = False
    #: the backend's provenance record (`GenerationResult.made_with`); empty where the
    #: entry has none or an invalid one
    made_with: Mapping[str, str] = field(default_factory=dict)


def _seed(meta: Mapping[str, object]) -> int | None:
    seed = meta.get("seed")
    return seed if type(seed) is int and 0 <= seed < 1 << 64 else None


def _made_with(meta: Mapping[str, object]) -> dict[str, str]:
    record = meta.get("made_with", {})
    return dict(record) if isinstance(record, dict) and made_with_problem(record) is None else {}


def _never(made_with: Mapping[str, str]) -> bool:
    return False


class Store:
    """A content-addressed folder of generation results."""

    #: `record_output` reads, merges and writes a record; apply's workers share one
    _records_lock = threading.Lock()

    def __init__(
        self, root: Path, *, placeholder: Callable[[Mapping[str, str]], bool] | None = None
    ) -> None:
        self.root = root
        #: whether an entry's `made_with` marks a placeholder this run may not take for
        #: the image (a stand-in's, in a real apply): such an entry is not `has_ours`
        self.placeholder = placeholder or _never

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _shard_ok(self, key: str) -> bool:
        """A shard folder that is a link (committed in a pull request, say) is not ours:
        nothing is read, written or deleted through it."""
        return not (self.root / key[:2]).is_symlink()

    @staticmethod
    def _own_folder(path: Path) -> None:
        """Before writing into `path`'s folder: a link there is removed (never
        followed); the write then makes a plain folder."""
        if path.parent.is_symlink():
            path.parent.unlink()

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def has_ours(self, key: str) -> bool:
        """Whether an entry this tool wrote on this account is there (see
        `CachedImage.ours`): what a plan may count as paid for already. Files that
        came with a checkout count as nothing, so they cannot hide a generation from
        the plan's count and its confirmation; apply still tries them first. Nor does
        an entry `placeholder` refuses."""
        meta = self._meta(key)
        if meta is None or not tagged(_sealed(key, str(meta["sha256"])), meta.get("mac")):
            return False
        made_with = meta.get("made_with")
        return not (isinstance(made_with, dict) and self.placeholder(made_with))

    def _meta(self, key: str) -> dict[str, object] | None:
        """The metadata of a present entry that records a digest, or None."""
        if not self.has(key) or not self._shard_ok(key):
            return None
        try:
            meta = json.loads(
                read_regular(self._path(key).with_suffix(".json"), limit=_META_LIMIT) or b""
            )
        except (ValueError, RecursionError):
            return None
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            return None
        return meta

    def digest(self, key: str) -> str | None:
        """The digest recorded for the entry's bytes, without reading them."""
        meta = self._meta(key)
        if meta is None or meta.get("key", key) != key:
            return None
        return str(meta["sha256"])

    def image(self, key: str) -> str | None:
        """The image the entry was made for, as its metadata says (unchecked: a label to
        show, never to decide by); None where it does not say."""
        meta = self._meta(key)
        image = meta.get("image") if meta is not None else None
        return image if isinstance(image, str) else None

    def provenance(self, key: str) -> tuple[int | None, dict[str, str]]:
        """The seed and `made_with` record the entry was stored with, without reading its
        bytes (None and empty where there is no entry or it does not say)."""
        meta = self._meta(key)
        if meta is None or meta.get("key", key) != key:
            return None, {}
        return _seed(meta), _made_with(meta)

    def made(self, key: str) -> float | None:
        """When the entry was stored (a timestamp), if it is there."""
        try:
            return self._path(key).stat().st_mtime if self._shard_ok(key) else None
        except OSError:
            return None

    def get(self, key: str) -> CachedImage | None:
        """The entry for `key`, its bytes checked against the digest recorded with them.

        Raises CorruptEntryError (after removing the entry) if they do not match."""
        path = self._path(key)
        data = read_regular(path, limit=MAX_BYTES) if self._shard_ok(key) else None
        if data is None:
            return None
        try:
            meta = json.loads(read_regular(path.with_suffix(".json"), limit=_META_LIMIT) or b"")
        except (ValueError, RecursionError):
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        seed, made_with = _seed(meta), _made_with(meta)
        digest = meta.get("sha256")
        if not isinstance(digest, str):  # from before digests: the caller verifies it
            return CachedImage(data, seed, made_with=made_with)
        problem = None
        if meta.get("key", key) != key:
            problem = "it was recorded for another key"
        elif sha256_bytes(data) != digest:
            problem = "its bytes do not match their digest"
        if problem is not None:
            self.remove(key)
            raise CorruptEntryError(problem)
        ours = tagged(_sealed(key, digest), meta.get("mac"))
        return CachedImage(data, seed, digest, ours, made_with)

    def put(
        self,
        key: str,
        data: bytes,
        *,
        seed: int | None = None,
        digest: str | None = None,
        ours: bool = True,
        image: str | None = None,
        made_with: Mapping[str, str] | None = None,
    ) -> str:
        """Store the bytes durably (they were paid for); returns their digest. The
        metadata goes first, so present bytes always have it (a crash in between reads
        as a corrupt entry, never as other bytes); it is not worth an fsync of its own:
        unreadable metadata reads as an entry from before digests, verified by decoding.
        `digest` is the SHA-256 of `data` where the caller has it already; `ours` says
        the bytes came from a backend or a remote through this tool, not a checkout;
        `image` names the image they were made for (`gc --dry-run` shows it);
        `made_with` is the backend's provenance record."""
        digest = self.seal(
            key, data, seed=seed, digest=digest, ours=ours, image=image, made_with=made_with
        )
        atomic_write(self._path(key), data)  # seal() made the folder a plain one
        return digest

    def seal(
        self,
        key: str,
        data: bytes,
        *,
        seed: int | None = None,
        digest: str | None = None,
        ours: bool = False,
        image: str | None = None,
        made_with: Mapping[str, str] | None = None,
    ) -> str:
        """Record the digest of the entry's bytes `data`, already stored (an entry from
        before digests, now verified); returns it. Only with `ours` is the entry
        marked as this account's (see `CachedImage.ours`)."""
        digest = digest or sha256_bytes(data)
        mac = tag(_sealed(key, digest)) if ours else None
        meta: dict[str, object] = {"key": key, "seed": seed, "sha256": digest, "mac": mac}
        if image is not None:
            meta["image"] = image[:_IMAGE_NAME_LIMIT]
        if made_with:
            meta["made_with"] = dict(made_with)
        self._own_folder(self._path(key))
        atomic_write(self._path(key).with_suffix(".json"), json.dumps(meta).encode(), durable=False)
        return digest

    def _output_path(self, output_key: str) -> Path:
        return self.root / "outputs" / output_key[:2] / output_key

    def record_output(
        self,
        output_key: str,
        digests: Mapping[str, str],
        params: Mapping[str, object] | None = None,
    ) -> None:
        """Remember the files (path → digest) an output key writes: the main output and
        its variants, so a set a killed run left half-written is still recognised; and
        the output options that key stands for (`AssetSpec.output_params`), so that
        `plan` can say which of them changed. Sealed like the entries: a record that
        came with a checkout is no witness to anything. Images that share one spec share
        its output key: the files the others wrote are kept beside these (the newest
        `_OUTPUT_RECORD_FILES`), so a killed run's files are recognised whichever of
        them it wrote last."""
        with self._records_lock:
            earlier = [
                (path, digest)
                for path, digest in self.output_files(output_key).items()
                if path not in digests
            ]
            room = max(0, _OUTPUT_RECORD_FILES - len(digests))
            kept = earlier[-room:] if room else []
            while True:
                record: dict[str, object] = {"files": dict(kept) | dict(digests)}
                if params is not None:
                    record["params"] = dict(params)
                record["mac"] = tag(_sealed_output(output_key, record))
                text = json.dumps(record)  # in order: the oldest files go first
                if len(text) <= _OUTPUT_RECORD_LIMIT or not kept:
                    break
                kept = kept[len(kept) // 2 + 1 :]  # long paths: fewer of the older ones
            self._own_folder(self._output_path(output_key))
            atomic_write(self._output_path(output_key), text.encode(), durable=False)
        for path, digest in digests.items():
            self._record_written(path, digest)

    def _written_marker(self, path: str, digest: str) -> Path | None:
        """The marker that nebula-build wrote `digest` to `path`: an empty file named by
        its seal, so one that came with a checkout names nothing this account checks."""
        name = tag(f"written {digest} {path}".encode())
        return None if name is None else self.root / "written" / name[:2] / name

    def _record_written(self, path: str, digest: str) -> None:
        marker = self._written_marker(path, digest)
        if marker is None or (self.root / "written").is_symlink():
            return
        self._own_folder(marker)
        with contextlib.suppress(OSError):
            marker.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO: no wait
            os.close(os.open(marker, flags, 0o644))

    def wrote_before(self, path: str, digest: str) -> bool:
        """Whether nebula-build wrote a file of `digest` to `path` on this account (for
        any spec, at any time since the cache was last collected)."""
        marker = self._written_marker(path, digest)
        if marker is None or (self.root / "written").is_symlink():
            return False
        try:
            return stat.S_ISREG(marker.lstat().st_mode) and not marker.parent.is_symlink()
        except OSError:
            return False

    def written_markers(self) -> Iterator[str]:
        yield from self._scan(self.root / "written")

    def forget_written(self, marker: str) -> None:
        path = self.root / "written" / marker[:2] / marker
        if not path.parent.is_symlink():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                path.unlink()

    def written_marker_names(self, files: Iterable[tuple[str, str]]) -> set[str]:
        """The markers' names of these (path, digest) pairs."""
        return {m.name for p, d in files if (m := self._written_marker(p, d)) is not None}

    def _output_record(self, output_key: str) -> dict[str, object]:
        """The record of `output_key` if this account wrote it, else empty."""
        path = self._output_path(output_key)
        if path.parent.is_symlink():
            return {}
        try:
            data = json.loads(read_regular(path, limit=_OUTPUT_RECORD_LIMIT) or b"")
        except (ValueError, RecursionError):
            return {}
        if not isinstance(data, dict):
            return {}
        mac = data.pop("mac", None)
        return data if tagged(_sealed_output(output_key, data), mac) else {}

    def output_files(self, output_key: str) -> dict[str, str]:
        """The digest of each file `output_key` wrote before (path → digest), if known."""
        files = self._output_record(output_key).get("files")
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}

    def output_params(self, output_key: str) -> dict[str, object] | None:
        """The output options `output_key` was recorded with on this account, or None
        where that is not known."""
        params = self._output_record(output_key).get("params")
        return params if isinstance(params, dict) else None

    def output_keys(self) -> Iterator[str]:
        yield from self._scan(self.root / "outputs")

    def remove_output(self, output_key: str) -> None:
        path = self._output_path(output_key)
        if not path.parent.is_symlink():
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                path.unlink()

    def keys(self) -> Iterator[str]:
        yield from self._scan(self.root)

    @staticmethod
    def _scan(root: Path) -> Iterator[str]:
        try:
            shards = os.listdir(root)
        except FileNotFoundError:
            return
        for shard in shards:
            if len(shard) != 2 or (root / shard).is_symlink():
                continue
            try:
                entries = list(os.scandir(root / shard))
            except OSError:
                continue
            yield from (
                e.name
                for e in entries
                if len(e.name) == _KEY_LENGTH
                and not e.name.startswith(".")
                and e.is_file(follow_symlinks=False)
            )

    def size(self, key: str) -> int:
        """Bytes an entry takes (data and metadata)."""
        total = 0
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            with contextlib.suppress(OSError):
                total += path.lstat().st_size
        return total

    def remove(self, key: str) -> int:
        """Delete an entry; returns the bytes freed."""
        if not self._shard_ok(key):
            return 0
        freed = self.size(key)
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                path.unlink()
        return freed
