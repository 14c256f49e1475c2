"""The encoding a text file (a manifest, a data file) was saved in where it is not the
UTF-8 nebula-build reads (a wide one, UTF-16 or UTF-32; a legacy one, Latin-1), and
where its first byte that is not UTF-8 stands: said the same way for each."""

from __future__ import annotations

from typing import NamedTuple

#: what Notepad and some other editors put before the UTF-8 text they save
UTF8_BOM = b"\xef\xbb\xbf"
#: the byte-order marks of the wide encodings, UTF-32's first: its little-endian mark
#: begins with UTF-16's
_WIDE_MARKS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
SAVE_AS_UTF8 = "save it as UTF-8"


def without_utf8_bom(raw: bytes) -> bytes:
    """The bytes after the byte-order mark an editor may have put first."""
    return raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw


def wide_encoding(raw: bytes) -> str | None:
    """ "UTF-32" or "UTF-16" where `raw` was saved in it: its byte-order mark first, or
    the NULs that encoding puts in the first character (no text read here holds a NUL):
    two side by side in UTF-32's four bytes, one in UTF-16's two; else None."""
    for mark, name in _WIDE_MARKS:
        if raw.startswith(mark):
            return name
    head = raw[:4]
    if len(head) == 4 and b"\x00\x00" in (head[:2], head[2:]):
        return "UTF-32"
    return "UTF-16" if b"\x00" in head[:2] else None


def saved_as_wide(raw: bytes) -> str | None:
    """What a file of `raw` bytes is and what to do, where it was saved in a wide
    encoding ("saved as UTF-32; save it as UTF-8"), a UTF-8 byte-order mark before it
    or not; None where it was not."""
    body = without_utf8_bom(raw)
    name = wide_encoding(body)
    if name is None:
        return None
    if len(body) < len(raw):  # converted twice: the editor's mark, then the other text
        return f"saved as {name} after a UTF-8 byte-order mark; {SAVE_AS_UTF8}"
    return f"saved as {name}; {SAVE_AS_UTF8}"


class NotUtf8(NamedTuple):
    """The first byte of a file that is not UTF-8: where an editor shows it, and what
    to say about it ("not UTF-8 text (byte 0xe9, 'é' in Latin-1); save it as UTF-8")."""

    line: int
    column: int
    said: str


def not_utf8(body: bytes, start: int) -> NotUtf8:
    """The byte at `start` of `body` (a file's bytes after its byte-order mark, which an
    editor does not show), where UTF-8 decoding failed, at its line and column."""
    line_start = body.rfind(b"\n", 0, start) + 1
    line = body.count(b"\n", 0, start) + 1
    column = len(body[line_start:start].decode("utf-8", errors="replace")) + 1
    byte = body[start]
    latin1 = f", {chr(byte)!r} in Latin-1" if byte >= 0xA0 else ""
    return NotUtf8(line, column, f"not UTF-8 text (byte 0x{byte:02x}{latin1}); {SAVE_AS_UTF8}")
