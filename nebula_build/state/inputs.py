"""Input files (inpainting images and masks), each read once per apply.

The digest that enters an image's key is computed from the very bytes handed
to the backend, so an input edited mid-run can never be recorded under the
wrong key. Every read goes through the guard: a regular file inside the project.
"""

from __future__ import annotations

from nebula_build.errors import TooLargeError, UnsafePathError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import ImageError, examine
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

    def read_small(self, relative: str, limit: int) -> bytes | None:
        """The bytes of an input a reader takes only up to `limit` (a palette), None when
        it cannot be read; TooLargeError past `limit`, from its size first, so a larger
        file is never read whole. What it reads is the whole file: kept, as `read` keeps it."""
        if relative in self._data:
            kept = self._data[relative]
            if kept is not None and len(kept) > limit:
                raise TooLargeError(f"input {relative!r} is over the {limit} limit", len(kept))
            return kept
        try:
            self._data[relative] = self.guard.read(relative, limit=limit)
        except TooLargeError:
            raise
        except (OSError, UnsafePathError):
            return None
        return self._data[relative]

    def size(self, relative: str) -> tuple[int, int] | str | None:
        """The input's width and height from its header (no pixel is decoded), what is
        wrong with it as an image, or None when it cannot be read."""
        data = self.read(relative)
        if data is None:
            return None
        return header_size(data)

    def data(self, relative: str) -> bytes:
        data = self.read(relative)
        if data is None:
            raise FileNotFoundError(relative)
        return data


def header_size(data: bytes) -> tuple[int, int] | str:
    """The size in an input image's header, or why it is not a PNG, JPEG or WebP image
    a model can take (checked from the bytes' structure: no pixel is decoded)."""
    if not data:
        return "the file is empty"
    try:
        return examine(data).size
    except ImageError as exc:
        return str(exc)
