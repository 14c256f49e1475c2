"""One trust boundary for bytes: every original is verified once, in the engine, before it
is cached or written; every cache entry is checked against its digest when read."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import sys
import tomllib
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from nebula_build import imaging
from nebula_build.imaging import ImageError, check_png_pixels, examine
from tests.conftest import fake_manifest, generation_log, image_info, install_distribution

# --- images built byte by byte ------------------------------------------------------


def png(size: tuple[int, int] = (64, 64), color=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, "PNG")
    return buffer.getvalue()


def noise_png(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


NOISE = noise_png()  # random: made once, so every use is the same image


def encoded(fmt: str, size: tuple[int, int] = (64, 64), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, fmt, **options)
    return buffer.getvalue()


JPEG = encoded("JPEG")


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of a PNG, up to IEND."""
    found, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        found.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
        if kind == b"IEND":
            break
    return found


def build_png(parts: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunk(kind, body) for kind, body in parts)


def with_chunks(data: bytes, before_idat=(), before_iend=(), after=b"") -> bytes:
    parts = chunks(data)
    first_idat = next(i for i, (kind, _) in enumerate(parts) if kind == b"IDAT")
    parts[first_idat:first_idat] = list(before_idat)
    parts[-1:-1] = list(before_iend)
    return build_png(parts) + after


def ihdr(width: int, height: int, depth: int = 8, color: int = 2, interlace: int = 0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)


def raw_png(width, height, rows: bytes, *, depth=8, color=2, interlace=0) -> bytes:
    """A PNG of pre-filtered scanlines, every CRC right."""
    return build_png(
        [
            (b"IHDR", ihdr(width, height, depth, color, interlace)),
            (b"IDAT", zlib.compress(rows)),
            (b"IEND", b""),
        ]
    )


def adam7_png(width: int, height: int) -> bytes:
    """An interlaced RGB PNG (Pillow reads them but cannot write them)."""
    rows = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4)):
        columns, lines = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and lines > 0:
            rows += (b"\x00" + bytes(range(3 * columns % 256)).ljust(3 * columns, b"\x07")) * lines
    for x0, y0, dx, dy in ((1, 0, 2, 2), (0, 1, 1, 2)):
        columns, lines = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and lines > 0:
            rows += (b"\x01" + b"\x05" * 3 * columns) * lines
    return raw_png(width, height, rows, interlace=1)


def bomb_png(side: int) -> bytes:
    """A few kilobytes claiming side×side 1-bit pixels, every CRC right."""
    rows = (b"\x00" + bytes((side + 7) // 8)) * side
    return raw_png(side, side, rows, depth=1, color=0)


def palette_png(*, color: int = 3, palette=(b"PLTE", bytes(range(9))), at: int = 1) -> bytes:
    """A 64x64 PNG of colour type `color`, with the `palette` chunk(s) put at index
    `at` among its chunks (IHDR, IDAT, IEND); None: no palette."""
    channels = {0: 1, 2: 3, 3: 1}[color]
    rows = (b"\x00" + b"\x02" * 64 * channels) * 64
    parts = [(b"IHDR", ihdr(64, 64, color=color)), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    if palette is not None:
        parts[at:at] = [palette] if isinstance(palette[0], bytes) else list(palette)
    return build_png(parts)


def jpeg_segments(data: bytes) -> list[int]:
    """The markers of a JPEG's segments up to its first scan."""
    markers, offset = [], 2
    while data[offset + 1] != 0xDA:
        markers.append(data[offset + 1])
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return markers


def riff_chunks(data: bytes) -> list[bytes]:
    kinds, offset = [], 12
    while offset < len(data):
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        kinds.append(data[offset : offset + 4])
        offset += 8 + length + (length & 1)
    return kinds


def riff(*parts: tuple[bytes, bytes]) -> bytes:
    body = b"".join(
        kind + len(data).to_bytes(4, "little") + data + b"\0" * (len(data) & 1)
        for kind, data in parts
    )
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


def riff_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    parts, offset = [], 12
    while offset < len(data):
        length = int.from_bytes(data[offset + 4 : offset + 8], "little")
        parts.append((data[offset : offset + 4], data[offset + 8 : offset + 8 + length]))
        offset += 8 + length + (length & 1)
    return parts


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").tobytes()


# --- a backend that answers whatever bytes the test wrote -----------------------------

LIAR_SOURCE = """
from pydantic import Field

from nebula_build.plugin import Backend, BackendSettings, GenerationResult, hookimpl
from nebula_build.plugin import nebula_models


class LiarSettings(BackendSettings):
    answer: str = Field("answer.bin", description="file whose bytes every generation returns")


class Liar(Backend):
    name = "liar"
    settings_model = LiarSettings

    @classmethod
    def models(cls, settings):
        return nebula_models()

    async def generate(self, request):
        with open(self.root / "generations.log", "a") as log:
            log.write(request.image_name + "\\n")
        return GenerationResult((self.root / self.settings.answer).read_bytes())


@hookimpl
def nebula_build_register_backends():
    return [Liar]
"""


@pytest.fixture
def liar(tmp_path, monkeypatch):
    site = tmp_path / "liar-site"
    install_distribution(
        site, "nebula-build-liar", {"nebula_liar": LIAR_SOURCE}, {"liar": "nebula_liar"}
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("nebula_liar", None)


def liar_project(project, answer: bytes, output: str = "a.png", **fields: object) -> Path:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items())
    return project(
        {
            "images.toml": (
                'version = 1\n[defaults]\nbackend = "liar"\n'
                'model = "black-forest-labs/FLUX.1-schnell"\nwidth = 64\nheight = 64\n'
                f'[images.a]\nprompt = "a"\noutput = "{output}"\n{extra}'
            ),
            "answer.bin": answer,
        }
    )


def cache_entries(root: Path) -> list[Path]:
    cache = root / ".nebula-build/cache"
    return [path for path in cache.glob("??/*") if len(path.name) == 64 and path.is_file()]


def liar_generations(root: Path) -> list[str]:
    log = root / "generations.log"
    return log.read_text().split() if log.exists() else []


# --- 4: a bad backend answer never poisons the cache ---------------------------------

BAD_ANSWERS = {
    "html": (b"<html>oops</html>", "an HTML page, not a PNG, JPEG or WebP image"),
    "gif": (encoded("GIF"), "a GIF image, not a PNG, JPEG or WebP image"),
    "bmp": (encoded("BMP"), "a BMP image, not a PNG, JPEG or WebP image"),
    "tiff": (encoded("TIFF"), "a TIFF image, not a PNG, JPEG or WebP image"),
    "text": (b"BMW 320i", "not a PNG, JPEG or WebP file (it starts with 'BMW 320i')"),
    "empty": (b"", "not a PNG, JPEG or WebP file (it starts with '')"),
    "truncated": (NOISE[:300], "a PNG cut short (in its IDAT chunk)"),
    "bad crc": (
        NOISE[:-20] + bytes(b ^ 0xFF for b in NOISE[-20:-16]) + NOISE[-16:],
        "a PNG with a bad CRC in its IDAT chunk",
    ),
    # at the declared size, so the PNG would be kept as it is: its stream is checked alone
    "bad filter": (
        raw_png(64, 64, (b"\x00" + bytes(192)) * 9 + (b"\x09" + bytes(192)) * 55),
        "a PNG with corrupt pixel data (an unknown row filter)",
    ),
    "stream cut short": (
        raw_png(64, 64, (b"\x00" + bytes(192)) * 63),
        "a PNG with pixel data cut short",
    ),
    "not deflate": (
        build_png([(b"IHDR", ihdr(64, 64)), (b"IDAT", b"garbage!"), (b"IEND", b"")]),
        "a PNG with corrupt pixel data (Error -3 while decompressing data",
    ),
    # at another size, so it is decoded to be resized: Pillow's reason, in one line
    "bad filter, resized": (
        raw_png(4, 2, b"\x09" + bytes(12) + b"\x00" + bytes(12)),
        "a PNG that does not decode (unrecognized data stream contents",
    ),
    # libpng and browsers refuse these: a palette must come, once, before the pixels
    "no palette": (palette_png(palette=None), "a palette PNG without its palette (no PLTE"),
    "palette after the pixels": (
        palette_png(at=2),
        "a PNG whose palette (PLTE chunk) comes after its pixel data",
    ),
    "palette after an RGB PNG's pixels": (
        palette_png(color=2, at=2),
        "a PNG whose palette (PLTE chunk) comes after its pixel data",
    ),
    "palette of 8 bytes": (
        palette_png(palette=(b"PLTE", bytes(8))),
        "a PNG whose palette is 8 bytes, not 1 to 256 colours of 3",
    ),
    "palette of 257 colours": (
        palette_png(palette=(b"PLTE", bytes(771))),
        "a PNG whose palette is 771 bytes, not 1 to 256 colours of 3",
    ),
    "two palettes": (
        palette_png(palette=[(b"PLTE", bytes(9)), (b"PLTE", bytes(9))]),
        "a PNG with two PLTE chunks",
    ),
    "greyscale with a palette": (
        palette_png(color=0),
        "a greyscale PNG with a palette (PLTE chunk), which PNG forbids",
    ),
    "side": (bomb_png(16400), "a PNG of 16400x16400 pixels: over the limit of 16384 pixels a side"),
    "bomb": (bomb_png(12000), "a PNG of 12000x12000 pixels: over the limit of 64 megapixels"),
    "jpeg cut short": (JPEG[:-300], "a JPEG cut short (no end-of-image marker)"),
    "jpeg header cut short": (JPEG[:400] + b"\xff\xd9", "a JPEG cut short (in a segment)"),
    "webp cut short": (encoded("WEBP")[:-40], "a WebP cut short"),
    "avif": (b"\0\0\0\x1cftypavif" + bytes(40), "an AVIF file, not a PNG, JPEG or WebP one"),
}


@pytest.mark.parametrize(("answer", "message"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_a_backend_answer_that_is_not_an_image_fails_in_one_line_and_is_never_cached(
    liar, project, run_cli, answer, message
):
    root = liar_project(project, answer)
    code, out, err = run_cli("apply")
    assert code == 1
    assert f"a: liar returned bytes nebula-build cannot use: {message}" in err
    assert "Traceback" not in err and "BytesIO" not in err
    assert not re.search(r"0x[0-9a-f]{6}", err)
    assert not (root / "a.png").exists()
    assert cache_entries(root) == []
    code, out, _ = run_cli("plan")
    assert "a  create" in out and "1 to generate," in out
    # the backend mends its ways: the next apply asks it again and succeeds
    (root / "answer.bin").write_bytes(png())
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert liar_generations(root) == ["a", "a"]
    assert pixels((root / "a.png").read_bytes()) == pixels(png())


def test_a_failed_answer_with_json_says_so_too(liar, project, run_cli):
    liar_project(project, b"<html>oops</html>")
    code, out, _ = run_cli("apply", "--json")
    assert code == 1
    assert "liar returned bytes nebula-build cannot use" in out


# --- 19: foreign chunks never reach the files or the cache ----------------------------


def test_a_pngs_foreign_chunks_are_stripped_without_re_encoding(liar, project, run_cli):
    original = NOISE
    kept = [(b"gAMA", struct.pack(">I", 45455)), (b"pHYs", struct.pack(">IIB", 2835, 2835, 1))]
    answer = with_chunks(
        original,
        before_idat=[
            *kept,
            (b"prVt", b"\xab" * 2_000_000),
            (b"tEXt", b"Comment\0from the backend"),
            (b"eXIf", b"MM\0*" + bytes(8)),
            (b"tIME", bytes(7)),
        ],
        before_iend=[(b"zzZz", b"private"), (b"iTXt", b"parameters\0\0\0\0\0a lie")],
        after=b"trailing bytes after IEND",
    )
    root = liar_project(project, answer)
    code, _, err = run_cli("apply")
    assert code == 0, err
    written = (root / "a.png").read_bytes()
    assert len(written) < len(original) + 4000
    kinds = [kind for kind, _ in chunks(written)]
    assert set(kinds) <= imaging.PNG_KEPT | {b"iTXt"}
    assert b"gAMA" in kinds and b"pHYs" in kinds
    texts = [body for kind, body in chunks(written) if kind == b"iTXt"]
    assert all(b"a lie" not in body for body in texts)  # only the tool's own metadata
    # the IDAT chunks are the backend's, byte for byte: nothing was re-encoded
    idat = [body for kind, body in chunks(original) if kind == b"IDAT"]
    assert [body for kind, body in chunks(written) if kind == b"IDAT"] == idat
    [entry] = cache_entries(root)
    cached = entry.read_bytes()
    assert cached.endswith(chunk(b"IEND", b""))
    assert [k for k, _ in chunks(cached)] == [b"IHDR", *(k for k, _ in kept), b"IDAT", b"IEND"]
    assert pixels(written) == pixels(original)


def test_a_jpegs_metadata_segments_are_stripped_and_its_colour_ones_kept(liar, project, run_cli):
    icc = b"ICC_PROFILE\0\x01\x01" + bytes(128)
    original = JPEG
    # after SOI: a comment, EXIF, Photoshop, an ICC profile; and bytes after the end
    segments = (
        b"\xff\xfe\x00\x0dhello there"
        + b"\xff\xe1\x00\x10Exif\0\0MM\0*\0\0\0\x08"
        + b"\xff\xed\x00\x0cPhotoshop!"
        + b"\xff\xe2"
        + (len(icc) + 2).to_bytes(2, "big")
        + icc
    )
    answer = original[:2] + segments + original[2:] + b"appended junk"
    root = liar_project(project, answer, output="a.webp")
    code, _, err = run_cli("apply")
    assert code == 0, err
    [entry] = cache_entries(root)
    cached = entry.read_bytes()
    markers = jpeg_segments(cached)
    assert 0xFE not in markers and 0xE1 not in markers and 0xED not in markers
    assert 0xE2 in markers and 0xE0 in markers  # the ICC profile and JFIF stay
    assert cached.endswith(b"\xff\xd9")
    assert pixels(cached) == pixels(original)
    assert image_info(root / "a.webp") == ("WEBP", (64, 64))


def test_a_webps_metadata_chunks_are_stripped_and_its_flags_follow(liar, project, run_cli):
    original = encoded("WEBP", lossless=True)
    [(_, vp8l)] = riff_parts(original)
    width, height = 63, 63
    flags = 0x08 | 0x04  # EXIF and XMP present
    vp8x = bytes((flags, 0, 0, 0)) + (width).to_bytes(3, "little") + (height).to_bytes(3, "little")
    answer = riff(
        (b"VP8X", vp8x),
        (b"VP8L", vp8l),
        (b"EXIF", b"MM\0*" + bytes(8)),
        (b"XMP ", b"<x:xmpmeta/>"),
        (b"ZZZZ", b"\xab" * 1001),
    )
    root = liar_project(project, answer, output="a.webp")
    code, _, err = run_cli("apply")
    assert code == 0, err
    [entry] = cache_entries(root)
    cached = entry.read_bytes()
    assert riff_chunks(cached) == [b"VP8X", b"VP8L"]
    assert cached[20] & (0x08 | 0x04) == 0
    assert int.from_bytes(cached[4:8], "little") == len(cached) - 8
    assert pixels(cached) == pixels(original)


def test_an_animated_webp_is_refused(liar, project, run_cli):
    vp8x = bytes((0x02, 0, 0, 0)) + (63).to_bytes(3, "little") * 2
    liar_project(project, riff((b"VP8X", vp8x), (b"ANIM", bytes(6))))
    code, _, err = run_cli("apply")
    assert code == 1 and "liar returned bytes nebula-build cannot use: an animated WebP" in err


# --- 3: a corrupt cache entry is a miss with a warning, never a restore --------------


def flip(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


def lock_keys(root: Path) -> dict[str, str]:
    lock = tomllib.loads((root / "images.lock").read_text())
    return {name: entry["generation_key"] for name, entry in lock["images"].items()}


def entry_path(root: Path, key: str) -> Path:
    return root / ".nebula-build/cache" / key[:2] / key


@pytest.fixture
def cached_pair(project, run_cli, fake_site, tmp_path):
    """Two images applied with the fake backend: a and b, both in the cache."""
    log = tmp_path / "gen.log"
    images = {name: {"prompt": name, "output": f"{name}.png"} for name in ("a", "b")}
    root = project({"images.toml": fake_manifest(log, images)})
    code, _, err = run_cli("apply")
    assert code == 0, err
    return root, log


def corrupt_by_flipping(root: Path, keys: dict[str, str]) -> None:
    path = entry_path(root, keys["a"])
    path.write_bytes(flip(path.read_bytes()))


def corrupt_by_truncating(root: Path, keys: dict[str, str]) -> None:
    path = entry_path(root, keys["a"])
    path.write_bytes(path.read_bytes()[:100])


def corrupt_by_swapping(root: Path, keys: dict[str, str]) -> None:
    entry_path(root, keys["a"]).write_bytes(entry_path(root, keys["b"]).read_bytes())


def corrupt_by_swapping_with_metadata(root: Path, keys: dict[str, str]) -> None:
    a, b = entry_path(root, keys["a"]), entry_path(root, keys["b"])
    a.write_bytes(b.read_bytes())
    a.with_suffix(".json").write_bytes(b.with_suffix(".json").read_bytes())


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (corrupt_by_flipping, "its bytes do not match their digest"),
        (corrupt_by_truncating, "its bytes do not match their digest"),
        (corrupt_by_swapping, "its bytes do not match their digest"),
        (corrupt_by_swapping_with_metadata, "it was recorded for another key"),
    ],
    ids=["flipped", "truncated", "swapped", "swapped-with-metadata"],
)
def test_a_corrupt_cache_entry_is_regenerated_with_a_warning_never_restored(
    cached_pair, run_cli, corrupt, reason
):
    root, log = cached_pair
    keys = lock_keys(root)
    good = (root / "a.png").read_bytes()
    corrupt(root, keys)
    (root / "a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert f"warning: a: cache entry was corrupt ({reason}); removed it and generated" in err
    assert _in_any_order(generation_log(log), ["a", "b"], then=["a"])
    written = (root / "a.png").read_bytes()
    assert written == good  # the fake backend is deterministic: the real image is back
    lock = tomllib.loads((root / "images.lock").read_text())
    assert lock["images"]["a"]["digest"] == hashlib.sha256(written).hexdigest()
    # the entry was replaced by the new generation's bytes and reads back clean
    (root / "a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0 and "warning" not in out + err
    assert _in_any_order(generation_log(log), ["a", "b"], then=["a"])


def test_a_corrupt_entry_is_removed_even_when_regenerating_fails(cached_pair, run_cli, tmp_path):
    root, log = cached_pair
    keys = lock_keys(root)
    corrupt_by_flipping(root, keys)
    (root / "a.png").unlink()
    images = {name: {"prompt": name, "output": f"{name}.png"} for name in ("a", "b")}
    (root / "images.toml").write_text(fake_manifest(log, images, fail=("a",)))
    code, out, err = run_cli("apply")
    assert code == 1 and "a refused on purpose" in err
    assert "cache entry was corrupt" in err
    assert not entry_path(root, keys["a"]).exists()
    code, out, _ = run_cli("plan")
    assert "a  restore" not in out and "1 to generate," in out


def test_a_corrupt_entry_found_by_json_apply_is_a_warning_there_too(cached_pair, run_cli):
    root, _ = cached_pair
    corrupt_by_flipping(root, lock_keys(root))
    (root / "a.png").unlink()
    code, out, err = run_cli("apply", "--json")
    assert code == 0, err
    assert "cache entry was corrupt" in out


# --- entries written before digests were recorded ---------------------------------------


def make_legacy(root: Path, key: str, data: bytes | None = None) -> None:
    """The layout 0.2 wrote: the bytes, and {"seed": …} beside them."""
    path = entry_path(root, key)
    if data is not None:
        path.write_bytes(data)
    path.with_suffix(".json").write_text('{"seed": null}')


def test_a_sound_entry_from_before_digests_is_restored_and_sealed(cached_pair, run_cli):
    root, log = cached_pair
    key = lock_keys(root)["a"]
    good = (root / "a.png").read_bytes()
    make_legacy(root, key)
    (root / "a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0 and "warning" not in out + err
    assert _in_any_order(generation_log(log), ["a", "b"])  # restored, not generated
    assert (root / "a.png").read_bytes() == good
    meta = json.loads(entry_path(root, key).with_suffix(".json").read_text())
    assert meta["sha256"] == hashlib.sha256(entry_path(root, key).read_bytes()).hexdigest()


def test_an_entry_from_before_digests_with_foreign_chunks_is_stripped_once(cached_pair, run_cli):
    root, log = cached_pair
    key = lock_keys(root)["a"]
    stored = entry_path(root, key).read_bytes()
    make_legacy(root, key, with_chunks(stored, before_idat=[(b"prVt", b"x" * 5000)]))
    (root / "a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0 and "warning" not in out + err
    assert _in_any_order(generation_log(log), ["a", "b"])
    assert entry_path(root, key).read_bytes() == stored
    assert b"prVt" not in (root / "a.png").read_bytes()


@pytest.mark.parametrize(
    "poison",
    [b"<html>oops</html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 40],
    ids=["html", "broken-png"],
)
def test_a_poisoned_entry_from_before_digests_is_regenerated(cached_pair, run_cli, poison):
    """What 0.2 cached from a bad backend answer: the issue's 'from cache' forever."""
    root, log = cached_pair
    key = lock_keys(root)["a"]
    make_legacy(root, key, poison)
    (root / "a.png").unlink()
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert "warning: a: cache entry was corrupt" in err
    assert _in_any_order(generation_log(log), ["a", "b"], then=["a"])
    with Image.open(root / "a.png") as image:
        image.load()


# --- pixels are decoded at most once per image ------------------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """How many times Pillow decoded pixel data (a load() with tiles to decode)."""
    count = {"n": 0}
    load = ImageFile.ImageFile.load

    def counting(self):
        if self.tile:
            count["n"] += 1
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return count


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 0),  # the PNG is kept as it is: its stream is checked, no image is built
        ({"output": "a.webp"}, 1),
        ({"output": "a.png", "widths": [32]}, 1),
        ({"output": "a.jpg", "resize": [32, 32], "widths": [16]}, 1),
    ],
    ids=["png-kept", "webp", "png-variants", "jpeg-resized"],
)
def test_pixels_are_decoded_at_most_once_per_image(
    liar, project, run_cli, decodes, fields, expected
):
    root = liar_project(project, NOISE, **fields)
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert decodes["n"] == expected
    for path in root.glob("a*.*"):
        if path.suffix != ".bin":
            with Image.open(path) as image:
                image.load()


def test_a_restore_decodes_once_too(liar, project, run_cli, decodes):
    root = liar_project(project, NOISE, output="a.webp")
    assert run_cli("apply").code == 0
    (root / "a.webp").unlink()
    decodes["n"] = 0
    code, out, err = run_cli("apply")
    assert code == 0, err
    assert decodes["n"] == 1 and liar_generations(root) == ["a"]


# --- imaging: the structural checks themselves -------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"])
def test_every_kind_of_png_pillow_writes_passes(mode):
    buffer = io.BytesIO()
    Image.effect_noise((37, 23), 50).convert("RGB").convert(mode).save(buffer, "PNG")
    data = buffer.getvalue()
    examined = examine(data)
    assert examined.data is data and examined.size == (37, 23)
    check_png_pixels(data)


@pytest.mark.parametrize("colours", [1, 2, 16, 256])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_every_palette_png_pillow_writes_passes(colours, bits):
    image = Image.new("P", (37, 23))
    image.putpalette(bytes(i % 256 for i in range(3 * colours)))
    image.info["transparency"] = 0
    buffer = io.BytesIO()
    image.save(buffer, "PNG", bits=bits)
    data = buffer.getvalue()
    assert data[25] == 3  # colour type 3: a palette
    assert examine(data).size == (37, 23)
    # a suggested palette before an RGB PNG's pixels is allowed
    assert examine(palette_png(color=2)).size == (64, 64)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (9, 17), (33, 2)])
def test_an_interlaced_png_is_checked_pass_by_pass(size):
    data = adam7_png(*size)
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # Pillow agrees it is whole
    check_png_pixels(examine(data).data)
    assert imaging.verify_image(data) == ("png", size)
    taller = build_png([(b"IHDR", ihdr(size[0], size[1] + 8, interlace=1)), *chunks(data)[1:]])
    with pytest.raises(ImageError, match=r"cut short|unknown row filter"):
        check_png_pixels(taller)


def test_idat_chunks_must_be_consecutive():
    data = noise_png((64, 64))
    parts = chunks(data)
    rows = zlib.decompress(b"".join(body for kind, body in parts if kind == b"IDAT"))
    stream = zlib.compress(rows)
    split = [
        parts[0],
        (b"IDAT", stream[:100]),
        (b"gAMA", struct.pack(">I", 45455)),
        (b"IDAT", stream[100:]),
        (b"IEND", b""),
    ]
    with pytest.raises(ImageError, match="not consecutive"):
        examine(build_png(split))
    # a foreign chunk between them is dropped, and the IDATs join up
    split[2] = (b"prVt", b"x")
    examined = examine(build_png(split))
    check_png_pixels(examined.data)
    assert pixels(examined.data) == pixels(data)


def test_an_apng_becomes_its_still_default_image():
    data = NOISE
    animated = with_chunks(
        data,
        before_idat=[(b"acTL", struct.pack(">II", 2, 0))],
        before_iend=[(b"fcTL", bytes(26)), (b"fdAT", b"\0\0\0\x01" + b"junk")],
    )
    assert examine(animated).data == data


def test_limits_come_from_the_header_before_any_allocation():
    with pytest.raises(ImageError, match="64 megapixels"):
        examine(bomb_png(8193))
    examine(bomb_png(8192))  # exactly 64 megapixels is allowed
    with pytest.raises(ImageError, match="0x16 pixels"):
        examine(build_png([(b"IHDR", ihdr(0, 16)), (b"IDAT", b""), (b"IEND", b"")]))
    with pytest.raises(ImageError, match="unknown kind"):
        examine(build_png([(b"IHDR", ihdr(4, 4, depth=3)), (b"IDAT", b""), (b"IEND", b"")]))


def test_the_byte_limit(monkeypatch):
    monkeypatch.setattr(imaging, "MAX_BYTES", 1000)
    with pytest.raises(ImageError, match="over the limit of 1,000 bytes"):
        examine(NOISE)


def test_pillows_own_bomb_guard_never_speaks_first():
    """A bomb within Pillow's reach is refused by our header check, in our words."""
    for data in (bomb_png(12000), jpeg_of_size(20000, 20000), jpeg_of_size(9000, 9000)):
        with pytest.raises(ImageError) as caught:
            imaging.verify_image(data)
        assert "over the limit" in str(caught.value)


def jpeg_of_size(width: int, height: int) -> bytes:
    """A JPEG whose frame header claims a size its data does not have."""
    data = bytearray(encoded("JPEG", (8, 8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_verify_image_names_other_files_as_before():
    with pytest.raises(ImageError, match=r"^not a PNG, JPEG, WebP or AVIF image$"):
        imaging.verify_image(b"hello")


def test_a_png_a_backend_had_checked_is_not_decompressed_again(liar, project, run_cli, monkeypatch):
    """The nebula backend checks answers with verify_image; the engine's check of the very
    same bytes is remembered by their digest, not paid twice."""
    streams = []
    check = imaging._check_png_stream
    monkeypatch.setattr(imaging, "_check_png_stream", lambda data: streams.append(check(data)))
    monkeypatch.setattr(imaging, "_SOUND_PNGS", {})
    answer = noise_png()
    imaging.verify_image(answer)  # what a backend does with what its server sent
    liar_project(project, answer)
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert len(streams) == 1


def test_the_nebula_servers_private_chunk_never_reaches_the_file(project, run_cli, nebula_server):
    from tests.conftest import nebula_manifest

    root = project({"images.toml": nebula_manifest({"a": {"prompt": "p", "output": "a.png"}})})
    nebula_server.add_faults("private_chunk:2")
    code, _, err = run_cli("apply")
    assert code == 0, err
    written = (root / "a.png").read_bytes()
    assert len(written) < 100_000
    assert {kind for kind, _ in chunks(written)} <= imaging.PNG_KEPT | {b"iTXt"}


def _in_any_order(log, first, then=()):
    """The fake backend makes a and b side by side: their order in the log is the
    machine's, not the tool's; what comes after them is the tool's."""
    return sorted(log[: len(first)]) == sorted(first) and log[len(first) :] == list(then)
