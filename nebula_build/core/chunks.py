"""Parse a manifest again after an edit by re-reading only the `[images.NAME]`
tables whose text changed (watch at 100,000 images: the whole parse takes seconds).

The text is cut at its table headers: each image's tables (`[images.NAME]` and its
`[images.NAME.sub]` tables, written together) form one chunk; everything else (the
keys before the first header, `[defaults]`, `[styles.x]`, `[backends.x]`, …) is
the rest. The cut is used only when it provably gives what parsing the whole text
gives: no multi-line strings, no array tables, no header the plain pattern does
not match, each chunk parses on its own to exactly its image's table, and the rest
parses to a table without `images`. Then the whole text's TOML is the rest's table
plus each chunk's image, in the order written. Anything else, or any problem in a
changed chunk, is None here: the caller parses the whole text, which also gives
the one-line error the user sees.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nebula_build.core.manifest import (
    MAX_MANIFEST_WEIGHT,
    ImageDecl,
    Manifest,
    ManifestModel,
    beyond_limits,
    shown_path,
)
from nebula_build.tomlparse import values_over

_IMAGE_HEADER = re.compile(r"\[images\.([A-Za-z0-9_-]+)(?:\.[A-Za-z0-9_-]+)*\][ \t]*(?:#.*)?")
#: a line that starts with "[" (a header, or an array's element), and one indented
_LONE_CR = re.compile(r"\r(?!\n)")
_TOML_WHITESPACE = " \t\r\n"  # a "\r" only before "\n" (`_LONE_CR`)
_BRACKET_LINE = re.compile(r"^\[.*$", re.MULTILINE)
_INDENTED_BRACKET = re.compile(r"^[ \t]+\[", re.MULTILINE)
_OTHER_HEADER = re.compile(r"\[([A-Za-z0-9_-]+)(?:\.[A-Za-z0-9_-]+)*\][ \t]*(?:#.*)?")


@dataclass(frozen=True, slots=True)
class Cut:
    """A manifest's text cut into the rest and one chunk per image, in order."""

    rest: str
    images: dict[str, str]


@dataclass(frozen=True)
class Parsed:
    """A manifest with the cut of its text (None where it could not be cut safely)."""

    manifest: Manifest
    cut: Cut | None


@dataclass(frozen=True)
class Reparsed:
    """A manifest parsed from its changed chunks, and what changed."""

    parsed: Parsed
    changed: frozenset[str]
    added: frozenset[str]
    removed: frozenset[str]
    #: the images are written in another order than before
    reordered: bool


def cut(text: str) -> Cut | None:
    """The text cut at its table headers, or None where that is not provably safe."""
    if '"""' in text or "'''" in text or _INDENTED_BRACKET.search(text):
        return None
    if _LONE_CR.search(text):  # invalid TOML: the whole parse says where
        return None
    rest: list[str] = []
    images: dict[str, str] = {}
    start, name = 0, None
    for line in _BRACKET_LINE.finditer(text):
        piece = text[start : line.start()]
        if name is None:
            rest.append(_trimmed(piece))
        elif name in images:  # its tables are not written together
            return None
        else:
            images[name] = _trimmed(piece)
        header = line[0].rstrip("\r")
        found = _IMAGE_HEADER.fullmatch(header)
        if found is not None:
            if found[1] == name:  # a sub-table of the same image: one chunk, from its
                del images[found[1]]  # first header
                continue
            name = found[1]
        else:
            other = _OTHER_HEADER.fullmatch(header)
            if other is None or other[1] == "images":
                return None
            name = None
        start = line.start()
    piece = text[start:]
    if name is None:
        rest.append(_trimmed(piece))
    elif name in images:
        return None
    else:
        images[name] = _trimmed(piece)
    return Cut("".join(rest), images)


def _trimmed(piece: str) -> str:
    """A table's text without the blank lines that end it (what separates tables is
    no part of either)."""
    text = piece.rstrip(_TOML_WHITESPACE)  # other whitespace is no TOML: kept, refused
    return text + "\n" if text else ""


def parse_rest(text: str) -> dict[str, Any] | None:
    """The rest's TOML, if it parses and says nothing of images."""
    if values_over(text, MAX_MANIFEST_WEIGHT):
        return None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        return None
    return None if "images" in data else data


def parse_image(name: str, chunk: str) -> ImageDecl | None:
    """One image's chunk, validated as the whole manifest validates it; None for any
    problem (the whole parse reports it)."""
    if values_over(chunk, MAX_MANIFEST_WEIGHT):
        return None
    try:
        data = tomllib.loads(chunk)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        return None
    if list(data) != ["images"] or list(data["images"]) != [name]:
        return None
    if beyond_limits(data) is not None:
        return None
    try:
        model = ManifestModel.model_validate({"version": 1, "images": data["images"]})
    except ValidationError:
        return None
    return model.images[name]


def reparse(previous: Parsed, text: str, path: Path, display_path: str) -> Reparsed | None:
    """The manifest of `text`, parsing only the image chunks that differ from
    `previous`'s; None where the whole text must be parsed (a change outside the
    image tables, a cut that is not safe, a problem in a changed chunk).

    Only the span of `text` that differs from the previous text is looked at,
    widened to whole chunks: the rest of the text is the previous text's, which
    was cut safely."""
    if previous.cut is None:
        return None
    old = previous.manifest.text
    region = _changed_region(old, text)
    if region is None:
        return None
    start, end, old_end = region
    before, now = cut(old[start:old_end]), cut(text[start:end])
    if before is None or now is None or before.rest or now.rest:
        return None  # a change to a table that is not an image's
    old_images = previous.manifest.model.images
    changed: set[str] = set()
    added: set[str] = set()
    decls: dict[str, ImageDecl] = {}
    for name, chunk in now.images.items():
        if before.images.get(name) == chunk:
            decls[name] = old_images[name]
            continue
        if name not in before.images and name in old_images:
            return None  # declared twice: the whole parse says so
        decl = parse_image(name, chunk)
        if decl is None:
            return None
        decls[name] = decl
        (changed if name in before.images else added).add(name)
    removed = frozenset(before.images.keys() - now.images.keys())
    reordered = [n for n in decls if n in before.images] != [n for n in before.images if n in decls]
    if list(decls) == list(before.images):
        images = dict(old_images)
        images.update((name, decls[name]) for name in changed)
    else:
        order = list(old_images)
        first = order.index(next(iter(before.images)))
        order[first : first + len(before.images)] = list(decls)
        images = {name: decls[name] if name in decls else old_images[name] for name in order}
    if changed or added or removed or reordered:
        model = previous.manifest.model.model_copy(update={"images": images})
    else:
        model = previous.manifest.model
    manifest = Manifest(path, shown_path(display_path), text, model)
    return Reparsed(
        Parsed(manifest, _CUT), frozenset(changed), frozenset(added), removed, reordered
    )


#: the cut of a text known to be safe, without its pieces (`reparse` reads the text)
_CUT = Cut("", {})
_BLOCK = 1 << 16


def _common_prefix(a: str, b: str) -> int:
    """How many characters `a` and `b` start with alike (compared a block at a time)."""
    limit, start = min(len(a), len(b)), 0
    while start < limit and a[start : start + _BLOCK] == b[start : start + _BLOCK]:
        start += _BLOCK
    end = min(start + _BLOCK, limit)
    while start < end and a[start] == b[start]:
        start += 1
    return min(start, limit)


def _common_suffix(a: str, b: str, limit: int) -> int:
    """How many characters `a` and `b` end with alike, at most `limit`."""
    size = 0
    while size < limit:
        step = min(_BLOCK, limit - size)
        if a[len(a) - size - step : len(a) - size] != b[len(b) - size - step : len(b) - size]:
            break
        size += step
    end = min(size + _BLOCK, limit)
    while size < end and a[len(a) - size - 1] == b[len(b) - size - 1]:
        size += 1
    return size


def _header_name(text: str, at: int) -> str | None:
    """The image of the header line at `at` ("" for another table's header)."""
    line_end = text.find("\n", at)
    line = text[at : len(text) if line_end < 0 else line_end].rstrip("\r")
    found = _IMAGE_HEADER.fullmatch(line)
    return found[1] if found is not None else ""


def _header_before(text: str, at: int) -> int:
    """Where the last header line that starts before `at` starts; -1 if none."""
    found = text.rfind("\n[", 0, max(at - 1, 0))
    if found >= 0:
        return found + 1
    return 0 if text.startswith("[") and at > 0 else -1


def _changed_region(old: str, new: str) -> tuple[int, int, int] | None:
    """(start, end in `new`, end in `old`) of the whole image chunks holding every
    difference between the texts, or None where they are not all inside images'
    chunks (or the texts are alike)."""
    if old == new:
        return None
    prefix = _common_prefix(old, new)
    suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
    # back to an image's first header whose line is wholly before the change
    start = _header_before(new, prefix + 1)
    while start >= 0:
        line_end = new.find("\n", start)
        name = _header_name(new, start)
        if not name:
            return None  # the change is in another table, or the keys at the top
        earlier = _header_before(new, start)
        if 0 <= line_end < prefix and (earlier < 0 or _header_name(new, earlier) != name):
            break
        start = earlier
    if start < 0:
        return None
    # forward to the next chunk's first header, wholly in the unchanged end
    end = new.find("\n[", len(new) - suffix)
    while end >= 0:
        at = end + 1
        name = _header_name(new, at)
        earlier_new = _header_name(new, _header_before(new, at))
        earlier_old = _header_name(old, _header_before(old, at - len(new) + len(old)))
        if name == "" or name not in (earlier_new, earlier_old):
            break
        end = new.find("\n[", at)
    stop = len(new) if end < 0 else end + 1
    region = new[start:stop]
    if '"""' in region or "'''" in region or _INDENTED_BRACKET.search(region):
        return None
    return start, stop, stop - len(new) + len(old)


def parsed(manifest: Manifest) -> Parsed:
    """A manifest parsed whole, with its cut where the cut is safe and gives the same
    images (the next edit can then be parsed by chunks)."""
    found = cut(manifest.text)
    if found is None or list(found.images) != list(manifest.model.images):
        return Parsed(manifest, None)
    if parse_rest(found.rest) is None:
        return Parsed(manifest, None)
    return Parsed(manifest, found)
