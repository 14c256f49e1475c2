"""Encode a backend's original bytes into the file an image declares.

Pillow is imported inside the functions: `plan` never decodes an image.
"""

from __future__ import annotations

import io

#: Output format by file extension; the format is part of the output key.
FORMATS: dict[str, str] = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}
_PIL_NAMES = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
_MAGIC: tuple[tuple[bytes, str], ...] = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))

# Generated images are at most 2048×2048; anything far larger is hostile or broken.
MAX_PIXELS = 4096 * 4096


def format_for(path: str) -> str | None:
    """The output format a path's extension asks for, or None if unsupported."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return FORMATS.get(name[dot:].lower()) if dot > 0 else None


def sniff(data: bytes) -> str | None:
    """The image format of `data` from its magic bytes (png, jpeg, webp) or None."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
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
        raise ValueError("not a PNG, JPEG or WebP image")
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


def encode(original: bytes, fmt: str, size: tuple[int, int]) -> bytes:
    """`original` as `fmt` at exactly `size`; the same bytes when nothing needs to change."""
    if sniff(original) == fmt and image_size(original) == size:
        return original
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(original)) as opened:
        image = opened.copy()
    if image.size != size:
        image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    options = {"quality": 90} if fmt in ("jpeg", "webp") else {}
    image.save(buffer, _PIL_NAMES[fmt], **options)
    return buffer.getvalue()
