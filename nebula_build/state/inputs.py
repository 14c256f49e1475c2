"""Input files (inpainting images and masks), each read once per apply.

The digest that enters an image's key is computed from the very bytes handed
to the backend, so an input edited mid-run can never be recorded under the
wrong key. Every read goes through the guard: a regular file inside the project.
"""

from __future__ import annotations

from nebula_build.fsutil import sha256_bytes
from nebula_build.state.guard import Guard

#: an input far larger than any image a model takes is refused, not read
MAX_INPUT_BYTES = 256 << 20


class InputSnapshot:
    """Reads each input file at most once and keeps its bytes for the backend."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._data: dict[str, bytes | None] = {}

    def digest(self, relative: str) -> str | None:
        data = self.read(relative)
        return None if data is None else sha256_bytes(data)

    def read(self, relative: str) -> bytes | None:
        if relative not in self._data:
            try:
                self._data[relative] = self.guard.read(relative, limit=MAX_INPUT_BYTES)
            except OSError:
                self._data[relative] = None
        return self._data[relative]

    def data(self, relative: str) -> bytes:
        data = self.read(relative)
        if data is None:
            raise FileNotFoundError(relative)
        return data
