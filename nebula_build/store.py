"""The content cache: the original bytes of every generation, by generation key.

Layout: `.nebula-build/cache/<key[:2]>/<key>` holds the bytes the backend
returned; `<key>.json` beside it holds what the backend reported (seed used).
Reverting a prompt, moving an output or changing its format reads from here
instead of paying for a new generation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write

_KEY_LENGTH = 64


@dataclass(frozen=True, slots=True)
class CachedImage:
    data: bytes
    seed: int | None = None


class Store:
    """A content-addressed folder of generation results."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> CachedImage | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(path.with_suffix(".json").read_bytes())
        except (OSError, ValueError):
            meta = {}
        seed = meta.get("seed")
        return CachedImage(data, seed if isinstance(seed, int) else None)

    def put(self, key: str, data: bytes, *, seed: int | None = None) -> None:
        """Store durably: the metadata first, so present bytes always have it."""
        path = self._path(key)
        atomic_write(path.with_suffix(".json"), json.dumps({"seed": seed}).encode())
        atomic_write(path, data)

    def keys(self) -> Iterator[str]:
        try:
            shards = os.listdir(self.root)
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                names = os.listdir(self.root / shard)
            except NotADirectoryError:
                continue
            yield from (n for n in names if len(n) == _KEY_LENGTH and not n.startswith("."))

    def size(self, key: str) -> int:
        """Bytes an entry takes (data and metadata)."""
        total = 0
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def remove(self, key: str) -> int:
        """Delete an entry; returns the bytes freed."""
        freed = self.size(key)
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            path.unlink(missing_ok=True)
        return freed
