"""`[assets] manifest = "…json"`: every image and variant, for templates and engines.

What a page needs for `<img srcset>` and layout-stable `width`/`height`, or a
game for its loader: path, size, format, bytes and alt text of each file.
Deterministic (sorted, stable formatting) and rewritten only when it changes.
The shape is `schemas.AssetManifest`, published as schema/assets.schema.json.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from nebula_build.core.plan import FileAction, FileKind, FileState
from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import without_key_suffix
from nebula_build.imaging import FORMATS
from nebula_build.state import conflicts
from nebula_build.state.lockfile import LockEntry

DigestOf = Callable[[str], "str | None"]
SizeOf = Callable[[str], int]


def content(
    target: str,
    specs: Mapping[str, AssetSpec],
    lock: Mapping[str, LockEntry],
    *,
    digest_of: DigestOf,
    size_of: SizeOf,
    dimensions_of: Callable[[str], tuple[int, int] | None] = lambda path: None,
) -> dict[str, Any]:
    """The manifest's content: images whose files are in place as the lock records.
    An image not made as declared yet (its generation failed, or an apply left it out)
    keeps the files the lock records at its declared paths while they are in place: a
    page keeps its picture. `dimensions_of` reads a file's width and height where the
    spec cannot say (a trimmed sprite, a file an earlier spec made)."""
    folder = posixpath.dirname(target) or "."  # project paths are always POSIX-style
    images: dict[str, Any] = {}
    for name in sorted(specs):
        spec, entry = specs[name], lock.get(name)
        if entry is None:
            continue
        recorded = entry.files()
        generation_key, prompt = spec.generation_key, spec.prompt
        if entry.output_key == spec.output_key:
            main = spec.file_size or dimensions_of(spec.output)
            if main is None:
                continue
            sizes = [(spec.output, *main)] + [(p, w, h) for p, w, h in spec.variants]
        else:
            generation_key = entry.generation_key
            prompt = str(entry.params.get("prompt", prompt))  # what the files show
            sizes = [  # only paths the manifest declares: a lock may record any
                (path, *size)
                for path in spec.paths
                if (digest := recorded.get(path)) is not None
                and digest_of(path) == digest
                and (size := dimensions_of(path)) is not None
            ]
        listed = [
            {
                "path": path,
                # a URL: `srcset` splits at spaces and commas, `#` and `?` end a path;
                # `@` may stand in one (`icon@2x.png`, as an engine reads it)
                "url": quote(posixpath.relpath(path, folder), safe="/@"),
                "width": width,
                "height": height,
                "format": FORMATS.get(posixpath.splitext(path)[1].lower(), spec.format),
                "bytes": size_of(path),
            }
            for path, width, height in sizes
            # missing or changed by hand: not what the lock promises
            if digest_of(path) == recorded.get(path)
        ]
        if listed:
            images[name] = {
                "alt": spec.alt or without_key_suffix(prompt, spec.key_color),
                "generation_key": generation_key,
                "files": listed,
            }
            if spec.row is not None:
                images[name]["row"] = spec.row
    return {"version": 1, "images": images}


def text_of(data: Mapping[str, Any]) -> str:
    """The file's exact text: the same content always gives the same bytes."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


#: `current` for a file that exists but is not text: never ours
UNREADABLE = "\x00unreadable"
#: why a file that reads as an asset manifest is copied before it is replaced
NOT_LAID_OUT = "is not laid out as nebula-build writes an asset manifest"
#: why one that is laid out so is copied: it is not the text written last
EDITED = "was edited since it was written"
#: why one the lock records no write of is copied: it may hold an edit
NOT_RECORDED = "is not recorded in the lock as written"
#: why a file git left conflict markers in is built again (copied: a side may hold an
#: edit)
_MERGED = "git left merge conflict markers in it"


def merged(text: str) -> bool:
    """Whether `text` is what `git merge` leaves of two asset manifests that both
    branches rebuilt: conflict markers, each side an asset manifest."""
    split = conflicts.side_texts(text)
    return split is not None and all(_top_level_ours(_loaded(side)) for side in split)


def _loaded(text: str) -> object:
    """The JSON value of `text`; None where it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _top_level_ours(data: object) -> bool:
    return isinstance(data, dict) and set(data) == {"version", "images"}


def written_as_ours(text: str) -> bool:
    """Whether `text` is an asset manifest laid out as nebula-build writes one, or
    git's merge of two such (`_written_as_ours`)."""
    return _written_as_ours(text, _loaded(text))


def _written_as_ours(text: str, data: object) -> bool:
    """Whether `text` (whose JSON value is `data`) is an asset manifest laid out as
    nebula-build writes one, or git's merge of two such: indented as `text_of` writes,
    in the shape of `schemas.AssetManifest` (version 1, images sorted by name, each
    with a generation key and only the keys and files nebula-build lists). Nothing
    else vouches for the file: the lock that records it may be a pull request's, and
    a hand-kept `{"version": …, "images": …}` has its two keys."""
    split = conflicts.side_texts(text) if data is None else None
    if split is not None:
        return all(_laid_out_as_ours(side, _loaded(side)) for side in split)
    return _laid_out_as_ours(text, data)


#: how the text of an asset manifest nebula-build wrote begins (`text_of`)
_OPENING = '{\n  "version": 1,\n  "images": {'
_IMAGE_KEYS = ({"alt", "generation_key", "files"}, {"alt", "generation_key", "files", "row"})
_FILE_KEYS = {"path": str, "url": str, "width": int, "height": int, "format": str, "bytes": int}
_FILE_KEY_SET = set(_FILE_KEYS)
_FORMATS = {"png", "jpeg", "webp", "avif"}
_GENERATION_KEY = re.compile("[0-9a-f]{64}")


def _laid_out_as_ours(text: str, data: object) -> bool:
    if not isinstance(data, dict) or list(data) != ["version", "images"]:
        return False
    images = data["images"]
    return (
        text[: len(_OPENING) + 2].replace("\r\n", "\n").startswith(_OPENING)  # or autocrlf's
        and text.endswith("}\n")
        and type(data["version"]) is int
        and data["version"] == 1
        and isinstance(images, dict)
        and list(images) == sorted(images)
        and all(_image_as_ours(image) for image in images.values())
    )


def _image_as_ours(image: object) -> bool:
    """Whether one entry of `images` has the shape nebula-build writes."""
    if not isinstance(image, dict) or set(image) not in _IMAGE_KEYS:
        return False
    key, files = image["generation_key"], image["files"]
    return (
        isinstance(image["alt"], str)
        and isinstance(image.get("row", ""), str)
        and isinstance(key, str)
        and _GENERATION_KEY.fullmatch(key) is not None
        and isinstance(files, list)
        and bool(files)
        and all(_file_as_ours(file) for file in files)
    )


def _file_as_ours(file: object) -> bool:
    return (
        isinstance(file, dict)
        and file.keys() == _FILE_KEY_SET
        and all(type(file[key]) is kind for key, kind in _FILE_KEYS.items())
        and file["format"] in _FORMATS
    )


def plan_asset_manifest(
    target: str,
    *,
    wanted: str | None,
    current: str | None,
    force: bool = False,
    edited: bool | None = False,
) -> FileAction:
    """Whether the manifest at `target` must be written: `wanted` is its text from the
    lock as it stands (None: images are about to change, so it will differ),
    `current` the file's text (None: missing; UNREADABLE: not text); `edited`: it is
    not the text the tool wrote last (the lock records its digest), so a write over it
    copies it first (None: the lock records no write of it, so the same). A file that
    is not an asset manifest (a README, the project's own files) is never replaced
    without --force."""

    def act(state: FileState, reason: str, backup: bool = False) -> FileAction:
        return FileAction(
            FileKind.ASSET_MANIFEST,
            "assets",
            state,
            reason,
            target,
            new=current is None,
            backup=backup,
        )

    data = None if current is None or current == UNREADABLE else _loaded(current)
    stranger = current is not None and (
        current == UNREADABLE or not (_top_level_ours(data) or merged(current))
    )
    if stranger and force:
        return act(FileState.BUILD, "a file nebula-build did not write; --force replaces it", True)
    if stranger:
        return act(FileState.CONFLICT, "a file nebula-build did not write is in the way")

    def build(reason: str) -> FileAction:
        """A write over `current`, after a copy where it was edited or its layout does
        not vouch for it."""
        if current is None:
            return act(FileState.BUILD, reason)
        if not _written_as_ours(current, data):
            return act(FileState.BUILD, f"{reason} ({target} {NOT_LAID_OUT})", backup=True)
        if edited:
            return act(FileState.BUILD, f"{reason} ({target} {EDITED})", backup=True)
        if edited is None:
            return act(FileState.BUILD, f"{reason} ({target} {NOT_RECORDED})", backup=True)
        return act(FileState.BUILD, reason)

    if current is not None and merged(current):
        if not _written_as_ours(current, data):
            return build(_MERGED)
        return act(FileState.BUILD, _MERGED, backup=True)  # a side may hold a hand edit
    if wanted is None:
        return build("images change")
    if current is None:
        return act(FileState.BUILD, "missing")
    if current != wanted:
        edit = _first_edit(data, _loaded(wanted)) if _written_as_ours(current, data) else None
        if edit is not None and len(edit) > _LONGEST_EDIT:  # a name the file made up
            edit = edit[: _LONGEST_EDIT - 1] + "…"
        if edit is None:
            return build("does not list the images as they are")
        if not edited:  # as written (or not known), the images changed since
            return build(f"does not list the images as they are (at {edit})")
        instead = " (set `alt` on the image there)" if edit.endswith(".alt") else " and lock"
        # a hand edit, or a write a lock not committed with it records (a fresh checkout)
        return act(
            FileState.BUILD,
            f"differs from the file the lock records, at {edit}; it is written from the "
            f"manifest{instead}",
            True,
        )
    return act(FileState.NOOP, "up to date")


#: the longest place of an edit a plan names
_LONGEST_EDIT = 120


def _first_edit(found: object, wanted: object, where: str = "") -> str | None:
    """Where `found` first differs from `wanted` (`images.hero.alt`,
    `images.hero.files[0].bytes`); None where they are equal."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        for key in sorted(found.keys() | wanted.keys(), key=str):
            at = f"{where}.{key}" if where else str(key)
            if key not in found or key not in wanted:
                return at
            if (edit := _first_edit(found[key], wanted[key], at)) is not None:
                return edit
        return None
    if isinstance(found, list) and isinstance(wanted, list):
        for index, (one, other) in enumerate(zip(found, wanted, strict=False)):
            if (edit := _first_edit(one, other, f"{where}[{index}]")) is not None:
                return edit
        return None if len(found) == len(wanted) else f"{where}[{min(len(found), len(wanted))}]"
    return None if found == wanted and type(found) is type(wanted) else where or "the whole file"
