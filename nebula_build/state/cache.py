"""The content cache: the original bytes of every generation, by generation key.

Layout: `.nebula-build/cache/<key[:2]>/<key>` holds the bytes the backend
returned; `<key>.json` beside it holds what the backend reported (seed used).
`outputs/<output key>` remembers the digest of the file each output key
produced, so a file already holding exactly that (a run killed between the
rename and the journal line, a copied checkout) is recognised, not a conflict.
Reverting a prompt, moving an output or changing its format reads from here
instead of paying for a new generation.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nebula_build.fsutil import atomic_write

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
        """Store the bytes durably (they were paid for). The metadata goes first so
        present bytes always have it; it only says which seed was used, so it is not
        worth an fsync of its own."""
        path = self._path(key)
        atomic_write(path.with_suffix(".json"), json.dumps({"seed": seed}).encode(), durable=False)
        atomic_write(path, data)

    def _output_path(self, output_key: str) -> Path:
        return self.root / "outputs" / output_key[:2] / output_key

    def record_output(self, output_key: str, digest: str) -> None:
        atomic_write(self._output_path(output_key), digest.encode(), durable=False)

    def output_digest(self, output_key: str) -> str | None:
        """The digest of the file `output_key` produced before, if known."""
        try:
            return self._output_path(output_key).read_text().strip() or None
        except OSError:
            return None

    def output_keys(self) -> Iterator[str]:
        yield from self._scan(self.root / "outputs")

    def remove_output(self, output_key: str) -> None:
        self._output_path(output_key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        yield from self._scan(self.root)

    @staticmethod
    def _scan(root: Path) -> Iterator[str]:
        try:
            shards = os.listdir(root)
        except FileNotFoundError:
            return
        for shard in shards:
            if len(shard) != 2:
                continue
            try:
                names = os.listdir(root / shard)
            except NotADirectoryError:
                continue
            yield from (n for n in names if len(n) == _KEY_LENGTH and not n.startswith("."))

    def size(self, key: str) -> int:
        """Bytes an entry takes (data and metadata)."""
        total = 0
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def remove(self, key: str) -> int:
        """Delete an entry; returns the bytes freed."""
        freed = self.size(key)
        for path in (self._path(key), self._path(key).with_suffix(".json")):
            path.unlink(missing_ok=True)
        return freed
