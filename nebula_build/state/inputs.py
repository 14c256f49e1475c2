"""Input files (inpainting images and masks), each read once per apply.

The digest that enters an image's key is computed from the very bytes handed
to the backend, so an input edited mid-run can never be recorded under the
wrong key.
"""

from __future__ import annotations

from pathlib import Path

from nebula_build.fsutil import is_within, sha256_bytes


class InputSnapshot:
    """Reads each input file at most once and keeps its bytes for the backend."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._data: dict[str, bytes | None] = {}

    def digest(self, relative: str) -> str | None:
        data = self.read(relative)
        return None if data is None else sha256_bytes(data)

    def read(self, relative: str) -> bytes | None:
        if relative not in self._data:
            path = self.root / relative
            try:
                self._data[relative] = path.read_bytes() if is_within(path, self.root) else None
            except OSError:
                self._data[relative] = None
        return self._data[relative]

    def data(self, relative: str) -> bytes:
        data = self.read(relative)
        if data is None:
            raise FileNotFoundError(relative)
        return data
