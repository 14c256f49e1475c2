"""Encode a backend's original bytes into the file an image declares.

Pillow is imported inside the functions: `plan` never decodes an image.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nebula_build.outputs.metadata import png_with_text, save_options

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: Output format by file extension; the format is part of the output key.
FORMATS: dict[str, str] = {
    ".png": "png",
    ".webp": "webp",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".avif": "avif",
}
_PIL_NAMES = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "avif": "AVIF"}
_MAGIC: tuple[tuple[bytes, str], ...] = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))

# Generated images are at most 2048×2048; anything far larger is hostile or broken.
MAX_PIXELS = 4096 * 4096


def format_for(path: str) -> str | None:
    """The output format a path's extension asks for, or None if unsupported."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return FORMATS.get(name[dot:].lower()) if dot > 0 else None


def sniff(data: bytes) -> str | None:
    """The image format of `data` from its magic bytes (png, jpeg, webp, avif) or None."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "avif"
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of encoded image bytes (reads the header only)."""
    if data.startswith(_MAGIC[0][0]) and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def verify_image(data: bytes) -> tuple[str, tuple[int, int]]:
    """(format, size) of bytes that must be a whole PNG, JPEG or WebP image.

    Raises ValueError for anything else: truncated or corrupt data, another
    format, or a decompression bomb.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    fmt = sniff(data)
    if fmt is None:
        raise ValueError("not a PNG, JPEG, WebP or AVIF image")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                image.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() skips the pixel data; a truncated body fails here
    except (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ValueError(f"not a valid {fmt.upper()} image ({exc})") from None
    return fmt, size


_DEFAULT_QUALITY = {"jpeg": 90, "webp": 90, "avif": 75}


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one image becomes its files (the spec's output options)."""

    format: str
    size: tuple[int, int]
    fit: str = "cover"
    resample: str = "lanczos"
    quality: int | None = None
    lossless: bool | None = None
    variants: tuple[tuple[str, int, int], ...] = ()
    #: metadata records to embed; empty means strip all metadata
    texts: tuple[tuple[str, str], ...] = ()

    @property
    def passthrough(self) -> bool:
        """The original bytes can be kept: no option needs the pixels re-encoded. PNG
        metadata is rewritten at the byte level; other formats need an encoder for it."""
        if self.quality is not None or self.lossless:
            return False
        return self.format == "png"


def render(original: bytes, encoding: Encoding) -> list[bytes]:
    """The main file, then each variant. The original bytes are written as they are
    when they already have the format and size asked for (no re-encode, no loss)."""
    main_as_is = (
        encoding.passthrough
        and sniff(original) == encoding.format
        and image_size(original) == encoding.size
    )
    if main_as_is:
        kept = png_with_text(original, dict(encoding.texts))  # metadata without re-encoding
        if not encoding.variants:
            return [kept]
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(original)) as opened:
        image = opened.copy()
    method = _METHODS[encoding.resample]
    if image.size != encoding.size:
        image = _fit(image, encoding, method)
    files = [kept if main_as_is else _save(image, encoding)]
    for _, width, height in encoding.variants:
        files.append(_save(image.resize((width, height), method), encoding))
    return files


_METHODS = {"lanczos": 1, "nearest": 0}  # PIL.Image.Resampling values, without importing PIL


def _fit(image: PILImage, encoding: Encoding, method: int) -> PILImage:
    from PIL import ImageOps

    if encoding.fit == "exact":
        return image.resize(encoding.size, method)
    if encoding.fit == "contain":
        if encoding.format != "jpeg" and image.mode != "RGBA":
            image = image.convert("RGBA")  # pad with transparency where the format has it
        return ImageOps.pad(image, encoding.size, method, color=None)
    return ImageOps.fit(image, encoding.size, method)


def _save(image: PILImage, encoding: Encoding) -> bytes:
    fmt = encoding.format
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    options: dict[str, object] = {}
    if fmt in _DEFAULT_QUALITY:
        options["quality"] = encoding.quality or _DEFAULT_QUALITY[fmt]
    if encoding.lossless:
        options["lossless"] = True
    if encoding.texts and fmt != "png":
        options |= save_options(dict(encoding.texts))
    buffer = io.BytesIO()
    image.save(buffer, _PIL_NAMES[fmt], **options)
    data = buffer.getvalue()
    return png_with_text(data, dict(encoding.texts)) if fmt == "png" else data
