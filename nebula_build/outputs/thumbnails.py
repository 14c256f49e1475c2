"""Small copies of the outputs for the gallery's grid, made once per output digest.

A thumbnail lives at `.nebula-build/thumbs/<name>.webp`, its name this account's
HMAC (`state.seal.tag`) of the digest of the file it was made from: a run that
finds the name made nothing new, so the second gallery of an unchanged project
costs one folder listing, and a thumbnail that came with a checkout (planted in a
pull request) never has the name of any output's: it is never shown. Where no
key can be kept there are no thumbnails (the grid shows the files themselves).

The files are the project's outputs, treated as untrusted: only PNG, JPEG, WebP
and AVIF are decoded (sniffed, then opened as that format only), only when the
header's size is the one the spec asks for, and only when the bytes read are the
digest the thumbnail is filed under. Any failure making one (a file that does not
decode, a full disk) is "no thumbnail", never an error. Transparent images keep
their alpha, less the halo the downscale leaves (`outputs.sprites.clear_halo`).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nebula_build.core.sprite import ALPHA_FLOOR
from nebula_build.imaging import MAX_BYTES, ImageError, check_size, sniff
from nebula_build.outputs.sprites import clear_halo
from nebula_build.state.guard import Guard
from nebula_build.state.seal import tag

#: the longest side of a thumbnail; an output no larger is shown as it is
THUMB_SIDE = 256
#: the folder, under the tool's state, that holds them
FOLDER = "thumbs"
_NAME = re.compile(r"[0-9a-f]{64}\.webp")
_QUALITY = 80
_PILLOW_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}

ReadOutput = Callable[[str], bytes]


def needs_thumbnail(width: int, height: int) -> bool:
    """Whether an output of this size is worth a smaller copy in the grid."""
    return max(width, height) > THUMB_SIDE


def file_name(digest: str) -> str | None:
    """The thumbnail's name for an output digest; None where no key can be kept."""
    mac = tag(b"thumbnail\n" + digest.encode())
    return None if mac is None else f"{mac}.webp"


@dataclass(frozen=True)
class Wanted:
    """An output to show small: its project path and the size its header must give
    (`exact`), or at most (a trimmed sprite's)."""

    path: str
    size: tuple[int, int]
    exact: bool = True


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
        """The thumbnail names in the folder: regular files only (one listing)."""
        try:
            if not stat.S_ISDIR(self.folder.lstat().st_mode):
                return set()
            with os.scandir(self.folder) as entries:
                return {
                    entry.name
                    for entry in entries
                    if _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
                }
        except OSError:
            return set()

    def make(
        self,
        wanted: Mapping[str, Wanted],
        read: ReadOutput,
        *,
        workers: int | None = None,
    ) -> Made:
        """Thumbnails for `wanted` (by output digest), made from `read(path)` for the
        digests that have none yet, in parallel threads (Pillow decodes and encodes
        without holding the GIL)."""
        have = self.existing()
        names: dict[str, str] = {}
        missing: list[tuple[str, str, Wanted]] = []
        for digest, want in wanted.items():
            name = file_name(digest)
            if name is None:
                return Made({}, 0, 0)
            if name in have:
                names[digest] = name
            else:
                missing.append((digest, name, want))
        if not missing:
            return Made(names, 0, 0)
        workers = workers or min(4, os.cpu_count() or 1)

        def one(item: tuple[str, str, Wanted]) -> bool:
            digest, name, want = item
            return self._make_one(digest, name, want, read)

        failed = 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for (digest, name, _), ok in zip(missing, pool.map(one, missing), strict=True):
                if ok:
                    names[digest] = name
                else:
                    failed += 1
        return Made(names, len(missing) - failed, failed)

    def _make_one(self, digest: str, name: str, want: Wanted, read: ReadOutput) -> bool:
        """Make one thumbnail; False for any failure (the page shows the file)."""
        try:
            data = read(want.path)
            if hashlib.sha256(data).hexdigest() != digest:
                return False  # changed since its digest was taken: not the file named
            small = thumbnail(data, want.size, exact=want.exact)
            self._guard.write(f"{FOLDER}/{name}", small, durable=False)
        except Exception:  # undecodable, refused, a full disk: no thumbnail, never a crash
            return False
        return True

    def prune(self, keep: Collection[str], *, made_before: float | None = None) -> int:
        """Remove the thumbnails whose names are not in `keep`; returns how many. With
        `made_before` (a time.time()), only those written before it: a caller that
        read the lock without the project lock leaves a running watch's new ones."""
        gone = self.existing() - set(keep)
        if made_before is not None:
            gone = {name for name in gone if self._written_before(name, made_before)}
        return self.remove(gone)

    def _written_before(self, name: str, moment: float) -> bool:
        try:
            return (self.folder / name).lstat().st_mtime < moment
        except OSError:
            return False

    def remove(self, names: Collection[str]) -> int:
        """Remove these thumbnails (regular files only); returns how many."""
        removed = 0
        for name in self.existing() & set(names):
            try:
                self._guard.remove(f"{FOLDER}/{name}")
            except OSError:
                continue
            removed += 1
        return removed


def thumbnail(data: bytes, size: tuple[int, int], *, exact: bool = True) -> bytes:
    """`data` (a PNG, JPEG, WebP or AVIF of `size`, or at most `size` unless `exact`)
    scaled to fit THUMB_SIDE, as WebP; with alpha where the image has any. Raises
    ImageError for anything else, before decoding a pixel."""
    if len(data) > MAX_BYTES:
        raise ImageError("over the size limit")
    fmt = sniff(data)
    if fmt is None:
        raise ImageError("not a PNG, JPEG, WebP or AVIF image")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]]) as image:
            width, height = image.size
            check_size(fmt, width, height)
            fits = (width, height) == size or (not exact and width <= size[0] and height <= size[1])
            if not fits:
                raise ImageError(f"a {width}x{height} image where {size[0]}x{size[1]} was asked")
            if fmt == "jpeg":  # decode at the smallest scale that still covers a thumbnail
                image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            small = image.convert("RGBA" if alpha else "RGB")
    except ImageError:
        raise
    except Exception as exc:  # Pillow's many ways of saying "not an image"
        raise ImageError(f"does not decode ({type(exc).__name__})") from None
    small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    if alpha:  # on the gallery's checkerboard as a resized sprite is delivered: no halo
        small = clear_halo(small, ALPHA_FLOOR)
    buffer = io.BytesIO()
    small.save(buffer, "WEBP", quality=_QUALITY, method=4)
    return buffer.getvalue()
