"""Bytes are verified once, in the engine, before they are cached or written.

Every original an image is made from passes here: a backend's answer (in
`Applier._persist`, before `Store.put`) and a cache entry (in `Applier._original`,
after `Store.get` checked it against its digest). Verification accepts a PNG, JPEG or
WebP within the size limits of `imaging`, strips the chunks and segments the tool does
not carry over (`imaging.examine`), turns pixels in a mode a PNG cannot hold (CMYK…)
into an RGB PNG, and proves the pixel data decodes, decoding it at
most once per image: when the files need the pixels (a resize, another format,
variants) the decoded image is kept for `render`; when the main file is the original
itself, a PNG's compressed stream is checked without building an image.

A cache entry that fails (digest, structure or pixels) is removed and becomes a miss
with a warning: the image is generated again, never restored from bad bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nebula_build.errors import RequestRejectedError
from nebula_build.fsutil import sha256_bytes
from nebula_build.imaging import ImageError, check_png_pixels, decode, examine
from nebula_build.outputs.encode import Encoding, encoding_for, needs_pixels
from nebula_build.plugin.backend import GenerationResult
from nebula_build.state.cache import CorruptEntryError, Store

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from nebula_build.core.spec import AssetSpec


@dataclass(frozen=True, slots=True)
class Verified:
    """An original that passed verification."""

    #: the bytes to keep and render: the original without foreign chunks
    data: bytes
    #: SHA-256 of `data` (what the cache records)
    digest: str
    format: str
    size: tuple[int, int]
    #: the pixels, decoded once, when rendering needs them; None when it does not
    pixels: PILImage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored(GenerationResult):
    """An original read back from the cache, already verified."""

    verified: Verified


def verify(data: bytes, encoding: Encoding, *, digest: str | None = None) -> Verified:
    """Check `data` as the original of an image written with `encoding`; `digest` is
    its SHA-256 where the caller has it (a cache entry).

    Raises ImageError (one line, saying why) for anything but a PNG, JPEG or WebP
    within the limits whose pixel data decodes."""
    examined = examine(data)
    kept = examined.data
    if kept is not data or digest is None:
        digest = sha256_bytes(kept)
    pixels = None
    if needs_pixels(encoding, examined.format, examined.size):
        pixels = decode(kept)
    elif examined.format == "png":
        check_png_pixels(kept, digest=digest)
    else:  # only a PNG is ever kept as it is; decode anything else all the same
        pixels = decode(kept)
    if pixels is not None and pixels.mode not in WRITABLE_MODES:
        return _as_rgb(pixels)
    return Verified(kept, digest, examined.format, examined.size, pixels)


#: the pixel modes every output format takes (JPEG, WebP and AVIF convert the others
#: when written; a PNG cannot hold CMYK, YCbCr or LAB)
WRITABLE_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B"})


def _as_rgb(pixels: PILImage) -> Verified:
    """An original in a mode no PNG holds (a CMYK JPEG, say) as a lossless RGB(A) PNG:
    what is cached is then an image every output can be written from."""
    import io

    converted = pixels.convert("RGBA" if pixels.mode in ("PA", "La", "RGBa") else "RGB")
    buffer = io.BytesIO()
    converted.save(buffer, "PNG")
    data = buffer.getvalue()
    return Verified(data, sha256_bytes(data), "png", converted.size, converted)


def verify_answer(data: bytes, spec: AssetSpec, encoding: Encoding | None = None) -> Verified:
    """A backend's answer for `spec`, verified; a BackendError naming the backend if it
    is not an acceptable image. `encoding` is `encoding_for(spec)`, where the caller has it."""
    try:
        return verify(data, encoding or encoding_for(spec))
    except ImageError as exc:
        raise RequestRejectedError(
            f"{spec.backend} returned bytes nebula-build cannot use: {exc}",
            backend=spec.backend,
            image=spec.name,
        ) from None


def restore(store: Store, spec: AssetSpec) -> tuple[Restored | None, str | None]:
    """The cached original for `spec`, verified, or None; with the warning to give when
    an entry was there but bad (it is removed, so the next plan generates it).

    An entry from before digests were recorded is verified by decoding like any other
    and, if sound, recorded again with its digest."""
    key = spec.generation_key
    try:
        cached = store.get(key)
    except CorruptEntryError as exc:
        return None, _corrupt(str(exc))
    if cached is None:
        return None, None
    try:
        verified = verify(cached.data, encoding_for(spec), digest=cached.digest)
    except ImageError as exc:
        store.remove(key)
        return None, _corrupt(str(exc))
    if verified.data is not cached.data:  # foreign chunks an older version kept
        store.put(
            key,
            verified.data,
            seed=cached.seed,
            digest=verified.digest,
            ours=cached.ours,
            image=spec.name,
            made_with=cached.made_with,
        )
    elif cached.digest is None:
        store.seal(
            key,
            cached.data,
            seed=cached.seed,
            digest=verified.digest,
            image=spec.name,
            made_with=cached.made_with,
        )
    restored = Restored(
        verified.data, seed=cached.seed, made_with=dict(cached.made_with), verified=verified
    )
    return restored, None


def _corrupt(reason: str) -> str:
    return f"cache entry was corrupt ({reason}); removed it and generated the image again"
