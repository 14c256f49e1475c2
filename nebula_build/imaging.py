"""Image formats: which file extension means which format, and checking bytes.

Shared by every layer that meets image bytes or paths: the core picks an
output's format from its extension, backends check what a server sent, the
engine checks what a backend returned. Pillow is imported inside the functions
that decode, so `plan` never loads it.
"""

from __future__ import annotations

import io

#: Output format by file extension; the format is part of the output key.
FORMATS: dict[str, str] = {
    ".png": "png",
    ".webp": "webp",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".avif": "avif",
}
#: What an input file (inpainting image or mask) may be.
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
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
    """(format, size) of bytes that must be a whole PNG, JPEG, WebP or AVIF image.

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


def pillow_writes(fmt: str) -> bool:
    """Whether this Pillow can encode `fmt` (AVIF needs pillow>=11.3 built with libavif)."""
    if fmt != "avif":
        return True
    from PIL import features

    return bool(features.check("avif"))
