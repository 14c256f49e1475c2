"""Image formats: which file extension means which format, and checking bytes.

Shared by every layer that meets image bytes or paths: the core picks an
output's format from its extension, backends check what a server sent, the
engine checks what a backend returned. Pillow is imported inside the functions
that decode, so `plan` never loads it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

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
#: What an input file (inpainting image or mask) may be.
INPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_MAGIC: tuple[tuple[bytes, str], ...] = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))

#: Limits on an image the tool accepts from a backend, the cache or an input. Generated
#: images are at most 2048×2048; anything far larger is hostile or broken. They are checked
#: from the header, before Pillow allocates anything (its own bomb guard is a backstop).
MAX_SIDE = 16384
MAX_PIXELS = 8192 * 8192  # 64 megapixels
MAX_BYTES = 256 * 1024 * 1024


class ImageError(ValueError):
    """Bytes that are not an acceptable image; the message says why, in one line."""


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
    """Width and height of encoded image bytes (reads the header only); ImageError for
    one whose header claims more pixels than Pillow opens."""
    if data.startswith(_MAGIC[0][0]) and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as exc:
        raise ImageError(str(exc)) from None


def verify_image(data: bytes) -> tuple[str, tuple[int, int]]:
    """(format, size) of bytes that must be a whole PNG, JPEG, WebP or AVIF image.

    Raises ImageError (a ValueError) for anything else: truncated or corrupt data,
    another format, or an image over the limits. A PNG is checked without decoding its
    pixels into an image (its chunks, CRCs and compressed stream are); other formats
    are decoded.
    """
    fmt = sniff(data)
    if fmt is None:
        raise ImageError("not a PNG, JPEG, WebP or AVIF image")
    if fmt == "avif":
        _check_bytes(data)
        return "avif", decode(data).size
    examined = examine(data)
    if examined.format == "png":
        check_png_pixels(examined.data)
    else:
        decode(examined.data)
    return examined.format, examined.size


# --- structure: limits and foreign data, from the bytes alone ----------------------


class Examined:
    """What `examine` found: the format, the size from the header, and the bytes with
    every chunk or segment not on the allowlist removed."""

    __slots__ = ("data", "format", "size")

    def __init__(self, fmt: str, size: tuple[int, int], data: bytes) -> None:
        self.format = fmt
        self.size = size
        self.data = data

    def __repr__(self) -> str:
        return f"Examined({self.format!r}, {self.size!r}, {len(self.data)} bytes)"


def examine(data: bytes) -> Examined:
    """Check the structure and limits of a PNG, JPEG or WebP without decoding pixels, and
    strip what the tool does not carry over: PNG chunks off `PNG_KEPT`, JPEG segments
    other than JFIF, ICC profile and Adobe colour-transform ones (EXIF, XMP, comments go:
    the tool writes its own metadata), WebP chunks other than the image, its alpha and
    ICC profile, and anything after the end of the image. A PNG's chunk CRCs are
    checked; its compressed pixel data is not (`check_png_pixels`)."""
    _check_bytes(data)
    fmt = sniff(data)
    if fmt == "png":
        return _examine_png(data)
    if fmt == "jpeg":
        return _examine_jpeg(data)
    if fmt == "webp":
        return _examine_webp(data)
    if fmt == "avif":
        raise ImageError("an AVIF file, not a PNG, JPEG or WebP one")
    other = _other_format(data)
    if other is not None:
        raise ImageError(f"{other}, not a PNG, JPEG or WebP image")
    shown = data[:16].decode("latin-1").encode("unicode_escape").decode("ascii")
    raise ImageError(f"not a PNG, JPEG or WebP file (it starts with '{shown}')")


#: formats a backend or a server may send instead of an image we take, by their start
_OTHER_FORMATS = (
    ((b"GIF87a", b"GIF89a"), "a GIF image"),
    ((b"II*\x00", b"MM\x00*"), "a TIFF image"),
    ((b"\x00\x00\x01\x00",), "an ICO image"),
    ((b"8BPS",), "a Photoshop file"),
    ((b"qoif",), "a QOI image"),
    ((b"\xff\x0a", b"\x00\x00\x00\x0cJXL "), "a JPEG XL image"),
    ((b"%PDF",), "a PDF document"),
)

#: the sizes a BMP's info header has, one per version: "BM" alone starts words too
_BMP_HEADERS = frozenset({12, 40, 52, 56, 64, 108, 124})


def _other_format(data: bytes) -> str | None:
    """What `data` is, where it is a format people know by name; None otherwise."""
    for starts, name in _OTHER_FORMATS:
        if data.startswith(starts):
            return name
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADERS:
        return "a BMP image"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "a HEIF image"
    head = data[:256].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG drawing"
    return None


def _check_bytes(data: bytes) -> None:
    if len(data) > MAX_BYTES:
        raise ImageError(_over_the_byte_limit(len(data), MAX_BYTES))


def _over_the_byte_limit(size: int, limit: int) -> str:
    """'256.1 MiB: over the limit of 256 MiB', in bytes where the two would read the
    same in MiB ('268,435,457 bytes: over the limit of 268,435,456 bytes (256 MiB)')."""
    said, said_limit = _in_mib(size), _in_mib(limit)
    if said != said_limit and said_limit.endswith("MiB"):
        return f"{said}: over the limit of {said_limit}"
    within = f" ({said_limit})" if said_limit.endswith("MiB") else ""
    return f"{size:,} bytes: over the limit of {limit:,} bytes{within}"


def _in_mib(count: int) -> str:
    """A size as MiB with one decimal where it has one ('1.2 MiB', '256 MiB'); in bytes
    under 1 MiB. (text.human_size says sizes elsewhere; the base layer cannot use it.)"""
    if count < 2**20:
        return f"{count:,} bytes"
    return f"{count / 2**20:.1f}".removesuffix(".0") + " MiB"


def check_size(fmt: str, width: int, height: int) -> None:
    """Raise ImageError for a size over the limits (read from a header)."""
    name = fmt.upper() if fmt != "webp" else "WebP"
    if width < 1 or height < 1:
        raise ImageError(f"a {name} of {width}x{height} pixels")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageError(
            f"a {name} of {width}x{height} pixels: over the limit of {MAX_SIDE} pixels a side"
        )
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"a {name} of {width}x{height} pixels: over the limit of "
            f"{MAX_PIXELS // 2**20} megapixels"
        )


#: PNG chunks kept: the critical ones and those that change how the pixels look.
PNG_KEPT = frozenset(b"IHDR PLTE IDAT IEND tRNS gAMA cHRM sRGB iCCP sBIT pHYs".split())
# colour type: (channels, bit depths allowed)
_PNG_COLOR_TYPES = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (1, (1, 2, 4, 8))}
_PNG_COLOR_TYPES |= {4: (2, (8, 16)), 6: (4, (8, 16))}


def _examine_png(data: bytes) -> Examined:
    import struct
    import zlib

    end = len(data)
    offset = 8
    kept: list[bytes | memoryview] = [data[:8]]
    view = memoryview(data)
    size: tuple[int, int] | None = None
    color = palette = 0  # the colour type, and the PLTE chunks seen
    idat_run = 0  # 0 before the first IDAT, 1 inside the run, 2 after it
    stripped = False
    while True:
        if offset + 12 > end:
            raise ImageError("a PNG cut short (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, offset)
        stop = offset + 12 + length
        if length > 0x7FFFFFFF or stop > end:
            raise ImageError(f"a PNG cut short (in its {_chunk_name(kind)} chunk)")
        (crc,) = struct.unpack_from(">I", data, stop - 4)
        if size is None and kind != b"IHDR":
            raise ImageError("a PNG that does not start with its IHDR chunk")
        keep = kind in PNG_KEPT
        if keep:
            if zlib.crc32(view[offset + 4 : stop - 4]) != crc:
                raise ImageError(f"a PNG with a bad CRC in its {_chunk_name(kind)} chunk")
            if kind == b"IHDR":
                if size is not None:
                    raise ImageError("a PNG with two IHDR chunks")
                size, color = _png_header(data[offset + 8 : stop - 4]), data[offset + 17]
            elif kind == b"PLTE":
                _check_palette(length, color, palette, idat_run)
                palette += 1
            elif kind == b"IDAT":
                if idat_run == 2:
                    raise ImageError("a PNG whose IDAT chunks are not consecutive")
                idat_run = 1
            elif idat_run == 1:
                idat_run = 2
            kept.append(view[offset:stop])
        else:
            stripped = True  # dropped: IDATs around it join up
        offset = stop
        if kind == b"IEND":
            break
    assert size is not None
    if not idat_run:
        raise ImageError("a PNG without pixel data (no IDAT chunk)")
    if color == 3 and not palette:
        raise ImageError("a palette PNG without its palette (no PLTE chunk)")
    if not stripped and offset == end:
        return Examined("png", size, data)
    return Examined("png", size, b"".join(kept))


def _check_palette(length: int, color: int, seen: int, idat_run: int) -> None:
    """A PLTE chunk where decoders take one (libpng and browsers refuse the file
    otherwise): one at most, before the pixel data, of 1 to 256 colours of 3 bytes,
    and never in a greyscale PNG (colour types 0 and 4), which the PNG spec forbids."""
    if color in (0, 4):
        raise ImageError("a greyscale PNG with a palette (PLTE chunk), which PNG forbids")
    if seen:
        raise ImageError("a PNG with two PLTE chunks")
    if idat_run:
        raise ImageError("a PNG whose palette (PLTE chunk) comes after its pixel data")
    if length % 3 or not 3 <= length <= 256 * 3:
        raise ImageError(f"a PNG whose palette is {length} bytes, not 1 to 256 colours of 3")


def _chunk_name(kind: bytes) -> str:
    return kind.decode("latin-1").encode("unicode_escape").decode("ascii")


def _png_header(body: bytes) -> tuple[int, int]:
    if len(body) != 13:
        raise ImageError("a PNG with a malformed IHDR chunk")
    width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
    depth, color, compression, filtering, interlace = body[8:13]
    channels_depths = _PNG_COLOR_TYPES.get(color)
    if channels_depths is None or depth not in channels_depths[1]:
        raise ImageError(f"a PNG of an unknown kind (colour type {color}, bit depth {depth})")
    if compression or filtering or interlace > 1:
        raise ImageError("a PNG with an unknown compression, filter or interlace method")
    check_size("png", width, height)
    return width, height


def check_png_pixels(data: bytes, *, digest: str | None = None) -> None:
    """Check that a PNG `examine` accepted holds exactly the pixel data its header
    promises: the IDAT stream decompresses (zlib checks its own checksum) to the exact
    length, and every row starts with a known filter. That is everything a decoder
    needs, at the cost of decompressing only; no image is allocated and memory stays
    bounded whatever the stream claims. Data past the last row is ignored, as decoders
    do.

    Sound streams are remembered by content (SHA-256; `digest` is that of `data`, when
    the caller has it): bytes a backend already had checked through `verify_image` are
    not decompressed a second time when the engine verifies them."""
    import hashlib

    key = digest or hashlib.sha256(data).hexdigest()
    if key in _SOUND_PNGS:
        return
    _check_png_stream(data)
    if len(_SOUND_PNGS) >= 4096:
        _SOUND_PNGS.clear()
    _SOUND_PNGS[key] = None


#: digests of PNGs whose pixel data `check_png_pixels` found sound (a bounded set)
_SOUND_PNGS: dict[str, None] = {}


def _check_png_stream(data: bytes) -> None:
    import struct
    import zlib

    header = data[16:29]
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    depth, color, _, _, interlace = header[8:13]
    bits = depth * _PNG_COLOR_TYPES[color][0]
    rows: list[tuple[int, int]] = []  # (row count, bytes per row with its filter byte)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    for x0, y0, dx, dy in passes:
        columns, lines = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and lines > 0:
            rows.append((lines, 1 + (columns * bits + 7) // 8))
    expected = sum(count * stride for count, stride in rows)

    inflater = zlib.decompressobj()
    at = produced = 0  # stream offset of the next filter byte; bytes produced so far
    segment, left = 0, rows[0][0]
    offset, end = 8, len(data)
    view = memoryview(data)
    try:
        while offset < end and produced < expected and not inflater.eof:
            length, kind = struct.unpack_from(">I4s", data, offset)
            body, offset = offset + 8, offset + 12 + length
            if kind != b"IDAT":
                continue
            # Small slices in, small pieces out: memory stays bounded whatever the stream
            # claims, a slice's leftover input is copied only a few times, and pieces this
            # size are reused from the heap (4 MiB ones cost a fresh mmap and ~1500 page
            # faults each: twice the time of the decompression itself).
            for start in range(body, body + length, _INFLATE_INPUT):
                pending: bytes | memoryview = view[start : min(start + _INFLATE_INPUT, offset - 4)]
                if produced >= expected or inflater.eof:
                    break
                while pending and produced < expected and not inflater.eof:
                    piece = inflater.decompress(pending, _INFLATE_PIECE)
                    pending = inflater.unconsumed_tail
                    base, produced = produced, produced + len(piece)
                    while left and at < produced:
                        stride = rows[segment][1]
                        n = min(left, (produced - at + stride - 1) // stride)
                        first = at - base
                        if max(piece[first : first + (n - 1) * stride + 1 : stride]) > 4:
                            raise ImageError(
                                "a PNG with corrupt pixel data (an unknown row filter)"
                            )
                        at, left = at + n * stride, left - n
                        if not left and segment + 1 < len(rows):
                            segment += 1
                            left = rows[segment][0]
    except zlib.error as exc:
        raise ImageError(f"a PNG with corrupt pixel data ({exc})") from None
    if produced < expected:
        raise ImageError("a PNG with pixel data cut short")


_INFLATE_INPUT = 32 << 10
_INFLATE_PIECE = 64 << 10
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)

# JPEG markers with no length: TEM, RST0-7 (SOI and EOI are handled apart).
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))
# Start-of-frame markers (they carry the size): C0-CF but DHT (C4), JPG (C8) and DAC (CC).
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _examine_jpeg(data: bytes) -> Examined:
    """Segments up to the first scan are checked and filtered: APP0 (JFIF), APP2 ICC
    profiles and APP14 (Adobe: how to read the colour channels) stay; the other APPn
    (EXIF, XMP…) and comments go. The scans run to the last end-of-image marker;
    anything after it goes."""
    end = len(data)
    offset = 2
    kept: list[bytes | memoryview] = [b"\xff\xd8"]
    view = memoryview(data)
    size: tuple[int, int] | None = None
    while True:
        while offset + 1 < end and data[offset] == data[offset + 1] == 0xFF:
            offset += 1  # fill bytes
        if offset + 4 > end:
            raise ImageError("a JPEG cut short (before its first scan)")
        if data[offset] != 0xFF:
            raise ImageError("a JPEG with a malformed segment")
        marker = data[offset + 1]
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        if marker in (0xD8, 0xD9):
            raise ImageError("a JPEG with a misplaced start or end marker")
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        stop = offset + 2 + length
        if length < 2 or stop > end:
            raise ImageError("a JPEG cut short (in a segment)")
        body = data[offset + 4 : stop] if marker in _JPEG_FRAMES or marker >= 0xE0 else b""
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        if marker in _JPEG_FRAMES:
            if len(body) < 5:
                raise ImageError("a JPEG with a malformed frame header")
            size = int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big")
            check_size("jpeg", *size)
        if _jpeg_keeps(marker, body):
            kept.append(view[offset:stop])
        offset = stop
    if size is None:
        raise ImageError("a JPEG without a frame header")
    last = data.rfind(b"\xff\xd9")
    if last < offset:
        raise ImageError("a JPEG cut short (no end-of-image marker)")
    kept.append(view[offset : last + 2])
    return Examined("jpeg", size, b"".join(kept))


def _jpeg_keeps(marker: int, body: bytes) -> bool:
    if marker == 0xFE:  # comment
        return False
    if 0xE0 <= marker <= 0xEF:
        return (
            (marker == 0xE0 and body[:5] in (b"JFIF\0", b"JFXX\0"))
            or (marker == 0xE2 and body[:12] == b"ICC_PROFILE\0")
            or (marker == 0xEE and body[:5] == b"Adobe")
        )
    return True


# WebP chunks kept: the image (lossy, lossless, extended header), its alpha, its ICC profile.
_WEBP_KEPT = frozenset((b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ICCP"))
_WEBP_EXIF_XMP_FLAGS = 0x08 | 0x04


def _examine_webp(data: bytes) -> Examined:
    """A still WebP: the image chunks, its alpha and ICC profile stay; EXIF, XMP and
    unknown chunks go (the extended header's flags follow), and so does anything after
    the RIFF container."""
    riff_end = 8 + int.from_bytes(data[4:8], "little")
    if riff_end > len(data) or riff_end < 12:
        raise ImageError("a WebP cut short")
    offset = 12
    kept: list[bytes] = []
    size: tuple[int, int] | None = None
    while offset < riff_end:
        if offset + 8 > riff_end:
            raise ImageError("a WebP with a malformed chunk")
        kind = data[offset : offset + 4]
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        stop = offset + 8 + length + (length & 1)
        if offset + 8 + length > riff_end:
            raise ImageError(f"a WebP cut short (in its {_chunk_name(kind)} chunk)")
        body = data[offset + 8 : offset + 8 + length]
        if kind in (b"ANIM", b"ANMF"):
            raise ImageError("an animated WebP")
        if kind in _WEBP_KEPT:
            if size is None:
                size = _webp_size(kind, body)
            if kind == b"VP8X" and body[:1]:
                flags = body[0]
                if flags & 0x02:
                    raise ImageError("an animated WebP")
                body = bytes((flags & ~_WEBP_EXIF_XMP_FLAGS,)) + body[1:]
            kept.append(kind + length.to_bytes(4, "little") + body + b"\0" * (length & 1))
        offset = stop
    if size is None:
        raise ImageError("a WebP without image data")
    check_size("webp", *size)
    content = b"".join(kept)
    return Examined(
        "webp", size, b"RIFF" + (4 + len(content)).to_bytes(4, "little") + b"WEBP" + content
    )


def _webp_size(kind: bytes, body: bytes) -> tuple[int, int]:
    if kind == b"VP8X" and len(body) >= 10:
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(body[6:8], "little") & 0x3FFF,
            int.from_bytes(body[8:10], "little") & 0x3FFF,
        )
    raise ImageError(f"a WebP with a malformed {_chunk_name(kind).strip()} chunk")


# --- pixels ------------------------------------------------------------------------


def decode(data: bytes) -> PILImage:
    """Decode image bytes whose size is within the limits into a loaded Pillow image.
    Raises ImageError (one line, Pillow's reason) if they do not decode."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        check_size(str(image.format or "image").lower(), *image.size)
        image.load()
    except ImageError:
        raise
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,  # raised only where warnings are errors
    ) as exc:
        fmt = sniff(data)
        name = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}.get(fmt or "")
        raise ImageError(f"a {name or 'file'} that does not decode ({_reason(exc)})") from None
    return image


def _reason(exc: BaseException) -> str:
    """Pillow's complaint as one line, without the repr of our in-memory buffer."""
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", text) or type(exc).__name__


def pillow_writes(fmt: str) -> bool:
    """Whether this Pillow can encode `fmt` (AVIF needs pillow>=11.3 built with libavif)."""
    if fmt != "avif":
        return True
    from PIL import features

    return bool(features.check("avif"))
