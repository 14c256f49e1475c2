"""What a written image says about how it was made, and reading it back.

Two records go into every file unless `metadata = false`:

- `parameters`: the layout AUTOMATIC1111 made common ("prompt / Negative prompt: … /
  Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: …, Model: …"), which PNG Info,
  sd-prompt-reader and sd-parsers read. Only known fields are written, except
  `Sampler: unknown` and, where the manifest leaves the steps to the model,
  `Steps: unknown`: those readers reject a line without them.
- `nebula-build`: the canonical spec as JSON (generation and output options), the seed
  the backend used and its `made_with` record (weights, dtype, speed options), so
  `nebula-build inspect` shows exactly what made the file and the tool can recognise
  its own outputs.

PNG gets them as text chunks inserted into the original bytes (no re-encode);
JPEG, WebP and AVIF as EXIF UserComment (parameters) and XMP (the spec).
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nebula_build.jsonparse import parse_json
from nebula_build.outputs.sprites import TRIM_KEY
from nebula_build.params import PARAMS

if TYPE_CHECKING:
    from nebula_build.core.spec import AssetSpec

PARAMETERS_KEY = "parameters"
SPEC_KEY = "nebula-build"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt", b"eXIf")
_USER_COMMENT = 0x9286
_EXIF_IFD = 0x8769
_LONG, _UNDEFINED = 4, 7  # TIFF field types
_XMP_NS = "https://nebula-build.dev/ns/1.0/"
#: the records that go into XMP, by their attribute there
_XMP_ATTRIBUTES = {SPEC_KEY: "spec", TRIM_KEY: "trim"}
#: an XMP packet larger than ours could be is not read
_XMP_LIMIT = 1 << 20
#: bytes of one PNG text chunk read, unpacked (ours are a few KB); and of all of them
MAX_TEXT = 1 << 20
MAX_TEXTS = 16 << 20
#: the JSON values our record can hold (a spec with many variants and sprite steps)
_RECORD_VALUES = 10_000


def records_for(
    spec: AssetSpec, *, seed: int | None = None, made_with: Mapping[str, str] | None = None
) -> tuple[tuple[str, str], ...]:
    """The metadata records each file of `spec` carries (none with `metadata = false`).

    `seed` is the seed the backend reports it used (a local backend derives one where
    the spec has none) and `made_with` its provenance record: the weights and the
    settings that change pixels. Both come from the generation (or its cache entry),
    so a file made again from the cache says what the first one said."""
    if not spec.metadata:
        return ()
    generation = spec.generation_params()
    record: dict[str, Any] = {
        "tool": "nebula-build",
        "image": spec.name,
        "generation": generation,
        "generation_key": spec.generation_key,
        "output": spec.output_params(),  # the delivered size, format, resize, variants
        "output_key": spec.output_key,
    }
    if seed is not None:
        record["seed"] = seed
    if made_with:
        record["made_with"] = dict(made_with)
    used = generation if seed is None else {**generation, "seed": seed}
    return (
        (PARAMETERS_KEY, parameters_text(used)),
        (SPEC_KEY, spec_json(record)),
    )


def parameters_text(generation: Mapping[str, Any]) -> str:
    """The AUTOMATIC1111-style parameters block for a generation: the prompt, a line per
    other text, then one settings line. `Size` is the generated size, as in A1111 (a
    resized file's own size is in our record's `output`)."""
    lines = [str(generation["prompt"])]
    settings: list[tuple[str, str]] = []
    for param in PARAMS:
        value = generation.get(param.name)
        if param.a1111 is None or value is None or value == "":
            continue
        if param.type is str:
            lines.append(f"{param.a1111}: {value}")
        else:
            settings.append((param.a1111, f"{value:g}" if param.type is float else str(value)))
    # Readers find the settings line by its leading `Steps:`; A1111 puts the sampler right
    # after it, and the hosted API does not say which sampler it used.
    if not any(label == "Steps" for label, _ in settings):
        settings.insert(0, ("Steps", "unknown"))
    after_steps = next(i + 1 for i, (label, _) in enumerate(settings) if label == "Steps")
    settings.insert(after_steps, ("Sampler", "unknown"))
    settings += [
        ("Size", f"{generation['width']}x{generation['height']}"),
        ("Model", str(generation["model"])),
        ("Backend", str(generation["backend"])),
    ]
    lines.append(", ".join(f"{label}: {value}".replace("\n", " ") for label, value in settings))
    return "\n".join(lines)


# --- PNG: chunks, byte-level -----------------------------------------------------


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(kind, body) for kind, body, _ in _raw_chunks(data)]


def _raw_chunks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(type, body, the whole chunk as stored) for each chunk up to IEND."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, offset = [], len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 12 + length
        chunks.append((kind, data[offset + 8 : end - 4], data[offset:end]))
        offset = end
        if kind == b"IEND":
            break
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_with_text(data: bytes, texts: Mapping[str, str]) -> bytes:
    """The PNG with its text chunks replaced by `texts` (iTXt, UTF-8); pixels untouched.

    The text goes before the first IDAT: readers that stop at the image data (Pillow's
    `open` before `load`, streaming readers) see it, and exiftool does not warn."""
    out, pending = [_PNG_SIGNATURE], True
    for kind, _, raw in _raw_chunks(data):
        if kind in _TEXT_CHUNKS:
            continue
        if pending and kind in (b"IDAT", b"IEND"):
            out += (_itxt(key, value) for key, value in texts.items())
            pending = False
        out.append(raw)  # as stored: no CRC recomputed over the pixel data
    return b"".join(out)


def _itxt(key: str, value: str) -> bytes:
    return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def png_text_chunks(data: bytes) -> tuple[dict[str, str], list[str]]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt) by keyword, and a line for each one
    left unread: cut short, corrupt, or longer than MAX_TEXT once unpacked. The file
    may be anyone's: a chunk of 1 MB can unpack to a gigabyte."""
    texts: dict[str, str] = {}
    unread: list[str] = []
    budget = MAX_TEXTS
    for kind, body in _chunks(data):
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        try:
            value = _text_of(kind, rest, budget)
        except ValueError as exc:
            unread.append(f"{name}: {exc}, not read")
            continue
        budget -= len(value)
        texts[name] = value
    return texts, unread


def _text_of(kind: bytes, rest: bytes, budget: int) -> str:
    """The text of a chunk after its keyword; ValueError saying why it cannot be read."""
    if kind == b"tEXt":
        return _bounded(rest, budget).decode("latin-1")
    if kind == b"zTXt":
        if rest[:1] != b"\0":
            raise ValueError("a zTXt chunk cut short or of an unknown compression")
        return _unpacked(rest[1:], budget).decode("latin-1")
    if len(rest) < 2 or rest[1] != 0:
        raise ValueError("an iTXt chunk cut short or of an unknown compression")
    compressed, rest = rest[0], rest[2:]
    _language, _, rest = rest.partition(b"\0")
    _translated, _, value = rest.partition(b"\0")
    value = _unpacked(value, budget) if compressed else _bounded(value, budget)
    return value.decode("utf-8", errors="replace")


def _bounded(value: bytes, budget: int) -> bytes:
    if len(value) > min(MAX_TEXT, budget):
        raise ValueError(_too_long(budget))
    return value


def _unpacked(value: bytes, budget: int) -> bytes:
    """`value` unpacked (zlib), at most MAX_TEXT and `budget` bytes of it made."""
    limit = min(MAX_TEXT, budget)
    unpacker = zlib.decompressobj()
    try:
        text = unpacker.decompress(value, limit + 1)
    except zlib.error:
        raise ValueError("a compressed text that does not unpack") from None
    if len(text) > limit:
        raise ValueError(_too_long(budget))
    if not unpacker.eof:
        raise ValueError("a compressed text cut short")
    return text


def _too_long(budget: int) -> str:
    if budget < MAX_TEXT:
        return f"a text past the {MAX_TEXTS >> 20} MiB of text read from one file"
    return f"a text longer than {MAX_TEXT >> 20} MiB"


# --- JPEG, WebP, AVIF: EXIF and XMP through Pillow --------------------------------


def save_options(texts: Mapping[str, str]) -> dict[str, Any]:
    """Pillow save() arguments that embed `texts` in a JPEG, WebP or AVIF file: the
    parameters as EXIF, our spec and a trimmed sprite's box (`TRIM_KEY`) as XMP."""
    from xml.sax.saxutils import quoteattr

    options: dict[str, Any] = {}
    if PARAMETERS_KEY in texts:
        comment = b"UNICODE\0" + texts[PARAMETERS_KEY].encode("utf-16-be")
        options["exif"] = exif_with_user_comment(comment)
    attributes = "".join(
        f" nebula:{name}={quoteattr(texts[key])}"
        for key, name in _XMP_ATTRIBUTES.items()
        if key in texts
    )
    if attributes:
        options["xmp"] = (
            f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            f'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
            f'xmlns:nebula="{_XMP_NS}"{attributes}/></rdf:RDF></x:xmpmeta>'
        ).encode()
    return options


def exif_with_user_comment(comment: bytes) -> bytes:
    """An EXIF block whose only field is the Exif IFD's UserComment, typed UNDEFINED as
    EXIF 2.3 section 4.6.5 requires. Pillow's `Exif` would type bytes as BYTE, and
    sd-prompt-reader (through piexif) then reads nothing."""
    entry = struct.Struct("<HHHII")  # an IFD of one entry: count, then tag, type, n, value
    exif_ifd_at = 8 + entry.size + 4  # after the header, IFD0 and its next-IFD link
    comment_at = exif_ifd_at + entry.size + 4
    return b"".join(
        (
            b"Exif\0\0II*\0" + struct.pack("<I", 8),  # little-endian TIFF header
            entry.pack(1, _EXIF_IFD, _LONG, 1, exif_ifd_at) + b"\0\0\0\0",
            entry.pack(1, _USER_COMMENT, _UNDEFINED, len(comment), comment_at) + b"\0\0\0\0",
            comment,
        )
    )


def read(data: bytes) -> dict[str, str]:
    """The metadata records an image carries (`parameters`, `nebula-build`, others)."""
    return read_records(data)[0]


def read_records(data: bytes) -> tuple[dict[str, str], list[str]]:
    """The metadata records an image carries, and a line for each one left unread (a
    PNG text chunk that is corrupt or too long: `png_text_chunks`)."""
    if data.startswith(_PNG_SIGNATURE):
        return png_text_chunks(data)
    import warnings

    from PIL import Image

    found: dict[str, str] = {}
    unread: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of each oddity of a file's EXIF
        with Image.open(io.BytesIO(data)) as image:
            xmp = image.info.get("xmp")
            try:
                comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
            except Exception:  # Pillow's TIFF reader raises SyntaxError, struct.error…
                comment = None
                unread.append("EXIF: corrupt, not read")
    if isinstance(comment, bytes) and comment.startswith(b"UNICODE\0"):
        found[PARAMETERS_KEY] = comment[8:].decode("utf-16-be", errors="replace")
    elif isinstance(comment, str):
        found[PARAMETERS_KEY] = comment
    if xmp:
        found |= xmp_records(xmp)
    return found, unread


def xmp_records(xmp: object) -> dict[str, str]:
    """Our records in an XMP packet (Pillow's `info["xmp"]`), by record name."""
    from xml.etree import ElementTree

    data = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    if len(data) > _XMP_LIMIT:
        return {}
    try:  # the file's: an unknown encoding named in it is a LookupError
        root = ElementTree.fromstring(data.strip(b"\0"))
    except (ElementTree.ParseError, ValueError, LookupError, RecursionError):
        return {}
    found: dict[str, str] = {}
    for element in root.iter():
        for key, name in _XMP_ATTRIBUTES.items():
            value = element.attrib.get(f"{{{_XMP_NS}}}{name}")
            if value is not None and key not in found:
                found[key] = value
    return found


def spec_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def written_for(data: bytes, output_key: str) -> bool:
    """Whether `data` carries the record nebula-build writes into every file of an output
    (`records_for`), naming `output_key`: the mark of a file it wrote for that output,
    which travels with the file into a fresh checkout. Read within bounds, never
    decoded: the file may be anyone's."""
    record = _spec_record(data)
    return (
        isinstance(record, dict)
        and record.get("tool") == "nebula-build"
        and record.get("output_key") == output_key
    )


def recorded_output_key(data: bytes) -> str | None:
    """The output key named by the record nebula-build wrote into `data`, if any."""
    record = _spec_record(data)
    if not isinstance(record, dict) or record.get("tool") != "nebula-build":
        return None
    key = record.get("output_key")
    return key if isinstance(key, str) else None


def sheet_texts(atlas: str, sheet: str) -> dict[str, str]:
    """The record an atlas's sheet carries: whose sheet it is, and where it was built,
    so a fresh checkout knows it as nebula-build's (`written_as_sheet`)."""
    return {SPEC_KEY: spec_json({"tool": "nebula-build", "atlas": atlas, "sheet": sheet})}


def written_as_sheet(data: bytes, sheet: str) -> bool:
    """Whether `data` carries the record nebula-build writes into an atlas's sheet built
    at `sheet` (`sheet_texts`). Read within bounds, never decoded."""
    record = _spec_record(data)
    return (
        isinstance(record, dict)
        and record.get("tool") == "nebula-build"
        and record.get("sheet") == sheet
    )


def _spec_record(data: bytes) -> object:
    text = _png_spec_text(data) if data.startswith(_PNG_SIGNATURE) else _xmp_spec_text(data)
    if text is None:
        return None
    try:
        return parse_json(text.encode(), values=_RECORD_VALUES)
    except ValueError:
        return None


def _png_spec_text(data: bytes) -> str | None:
    """Our record's text in a PNG: an uncompressed iTXt chunk before the pixel data, as
    `png_with_text` writes it. The chunks are walked, not copied."""
    offset = len(_PNG_SIGNATURE)
    prefix = SPEC_KEY.encode("latin-1") + b"\0\0\0\0\0"
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind in (b"IDAT", b"IEND"):
            return None
        start = offset + 8
        if kind == b"iTXt" and length <= _XMP_LIMIT and data.startswith(prefix, start):
            try:
                return data[start + len(prefix) : start + length].decode("utf-8")
            except UnicodeDecodeError:
                return None
        offset = start + length + 4
    return None


def _xmp_spec_text(data: bytes) -> str | None:
    """Our record's text in the XMP packet of a JPEG, WebP or AVIF file."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a file's oddities say only that it is not ours
        try:
            with Image.open(io.BytesIO(data), formats=("JPEG", "WEBP", "AVIF")) as image:
                xmp = image.info.get("xmp")
        except Exception:  # any file Pillow cannot open is not ours
            return None
    return xmp_records(xmp).get(SPEC_KEY) if xmp else None
