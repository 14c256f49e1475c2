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

from nebula_build.core.manifest import ImageDecl, Manifest, ManifestModel, beyond_limits

_IMAGE_HEADER = re.compile(r"\[images\.([A-Za-z0-9_-]+)(?:\.[A-Za-z0-9_-]+)*\][ \t]*(?:#.*)?")
#: a line that starts with "[" (a header, or an array's element), and one indented
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
    text = piece.rstrip()
    return text + "\n" if text else ""


def parse_rest(text: str) -> dict[str, Any] | None:
    """The rest's TOML, if it parses and says nothing of images."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    return None if "images" in data else data


def parse_image(name: str, chunk: str) -> ImageDecl | None:
    """One image's chunk, validated as the whole manifest validates it; None for any
    problem (the whole parse reports it)."""
    try:
        data = tomllib.loads(chunk)
    except (tomllib.TOMLDecodeError, RecursionError):
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
    image tables, a cut that is not safe, a problem in a changed chunk)."""
    before = previous.cut
    if before is None:
        return None
    now = cut(text)
    if now is None or now.rest != before.rest:
        return None
    old_images = previous.manifest.model.images
    images: dict[str, ImageDecl] = {}
    changed: set[str] = set()
    added: set[str] = set()
    for name, chunk in now.images.items():
        if before.images.get(name) == chunk:
            images[name] = old_images[name]
            continue
        decl = parse_image(name, chunk)
        if decl is None:
            return None
        images[name] = decl
        (changed if name in before.images else added).add(name)
    removed = frozenset(before.images.keys() - now.images.keys())
    kept = [name for name in images if name in old_images]
    reordered = kept != [name for name in old_images if name in images]
    if not changed and not added and not removed and not reordered:
        model = previous.manifest.model
    else:
        model = previous.manifest.model.model_copy(update={"images": images})
    manifest = Manifest(path, display_path, text, model)
    return Reparsed(Parsed(manifest, now), frozenset(changed), frozenset(added), removed, reordered)


def parsed(manifest: Manifest) -> Parsed:
    """A manifest parsed whole, with its cut where the cut is safe and gives the same
    images (the next edit can then be parsed by chunks)."""
    found = cut(manifest.text)
    if found is None or list(found.images) != list(manifest.model.images):
        return Parsed(manifest, None)
    if parse_rest(found.rest) is None:
        return Parsed(manifest, None)
    return Parsed(manifest, found)
