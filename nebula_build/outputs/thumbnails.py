"""Small copies of the outputs for the gallery's grid, made once per output digest.

A thumbnail lives at `.nebula-build/thumbs/<digest>.webp`, named by the digest of
the file it was made from: a run that finds the name made nothing new, so the
second gallery of an unchanged project costs one folder listing. The files are
the project's outputs, decoded with the tool's limits (`imaging.decode`): a file
that does not decode gets no thumbnail, and the page shows the file itself.
Transparent images keep their alpha.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nebula_build.errors import UnsafePathError, UserError
from nebula_build.imaging import MAX_BYTES, ImageError, decode
from nebula_build.state.guard import Guard

#: the longest side of a thumbnail; an output no larger is shown as it is
THUMB_SIDE = 256
#: the folder, under the tool's state, that holds them
FOLDER = "thumbs"
_NAME = re.compile(r"[0-9a-f]{64}\.webp")
_QUALITY = 80

ReadOutput = Callable[[str], bytes]


def needs_thumbnail(width: int, height: int) -> bool:
    """Whether an output of this size is worth a smaller copy in the grid."""
    return max(width, height) > THUMB_SIDE


def file_name(digest: str) -> str:
    return f"{digest}.webp"


@dataclass(frozen=True)
class Made:
    """What one `Thumbnails.make` did: thumbnails by output digest (the file name, in
    the folder), and how many it made now; the outputs that could not be read or
    decoded have none."""

    names: dict[str, str]
    made: int
    failed: int


class Thumbnails:
    """The thumbnail folder of one project's state."""

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER
        # writes go through the state folder's guard: a linked `thumbs` is refused
        self._guard = Guard(state_dir)

    def existing(self) -> set[str]:
        """The thumbnail names in the folder (one listing, no file opened)."""
        if self.folder.is_symlink():
            return set()
        try:
            return {name for name in os.listdir(self.folder) if _NAME.fullmatch(name)}
        except OSError:
            return set()

    def make(
        self,
        wanted: Mapping[str, str],
        read: ReadOutput,
        *,
        workers: int | None = None,
    ) -> Made:
        """Thumbnails for `wanted` (output digest → the output's project path), made
        from `read(path)` for the digests that have none yet, in parallel threads
        (Pillow decodes and encodes without holding the GIL)."""
        have = self.existing()
        names = {d: file_name(d) for d in wanted if file_name(d) in have}
        missing = [(d, path) for d, path in wanted.items() if d not in names]
        if not missing:
            return Made(names, 0, 0)
        self.folder.mkdir(parents=True, exist_ok=True)
        workers = workers or min(8, os.cpu_count() or 1)

        def one(item: tuple[str, str]) -> tuple[str, bool]:
            digest, path = item
            return digest, self._make_one(digest, path, read)

        failed = 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for digest, ok in pool.map(one, missing):
                if ok:
                    names[digest] = file_name(digest)
                else:
                    failed += 1
        return Made(names, len(missing) - failed, failed)

    def _make_one(self, digest: str, path: str, read: ReadOutput) -> bool:
        try:
            data = read(path)
            small = thumbnail(data)
        except (OSError, UserError, ImageError):
            return False
        try:
            self._guard.write(f"{FOLDER}/{file_name(digest)}", small, durable=False)
        except UnsafePathError:
            raise UnsafePathError(
                f"{self.folder} is not a plain folder (a symbolic link?): remove it"
            ) from None
        return True

    def prune(self, keep: Collection[str]) -> int:
        """Remove the thumbnails whose names are not in `keep`; returns how many."""
        removed = 0
        for name in self.existing() - set(keep):
            self._guard.remove(f"{FOLDER}/{name}")
            removed += 1
        return removed


def thumbnail(data: bytes) -> bytes:
    """`data` (an image within the tool's limits) scaled to fit THUMB_SIDE, as WebP;
    with alpha where the image has any. Raises ImageError if it does not decode."""
    if len(data) > MAX_BYTES:
        raise ImageError("over the size limit")
    from PIL import Image

    with decode(data) as image:
        alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        small = image.convert("RGBA" if alpha else "RGB")
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "WEBP", quality=_QUALITY, method=4)
    return buffer.getvalue()
