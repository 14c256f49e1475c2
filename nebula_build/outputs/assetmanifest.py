"""`[assets] manifest = "…json"`: every image and variant, for templates and engines.

What a page needs for `<img srcset>` and layout-stable `width`/`height`, or a
game for its loader: path, size, format, bytes and alt text of each file.
Deterministic (sorted, stable formatting) and rewritten only when it changes.
The shape is `schemas.AssetManifest`, published as schema/assets.schema.json.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from nebula_build.core.plan import FileAction, FileKind, FileState
from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import without_key_suffix
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
    `dimensions_of` reads a file's width and height where the spec cannot say (a
    trimmed sprite)."""
    folder = posixpath.dirname(target) or "."  # project paths are always POSIX-style
    images: dict[str, Any] = {}
    for name in sorted(specs):
        spec, entry = specs[name], lock.get(name)
        if entry is None or entry.output_key != spec.output_key:
            continue
        recorded = entry.files()
        main = spec.file_size or dimensions_of(spec.output)
        if main is None:
            continue
        sizes = [(spec.output, *main)] + [(p, w, h) for p, w, h in spec.variants]
        listed = [
            {
                "path": path,
                # a URL: `srcset` splits at spaces and commas, `#` and `?` end a path;
                # `@` may stand in one (`icon@2x.png`, as an engine reads it)
                "url": quote(posixpath.relpath(path, folder), safe="/@"),
                "width": width,
                "height": height,
                "format": spec.format,
                "bytes": size_of(path),
            }
            for path, width, height in sizes
            # missing or changed by hand: not what the lock promises
            if digest_of(path) == recorded.get(path)
        ]
        if listed:
            images[name] = {
                "alt": spec.alt or without_key_suffix(spec.prompt, spec.key_color),
                "generation_key": spec.generation_key,
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


def is_ours(text: str) -> bool:
    """Whether a file's text is an asset manifest (so this tool may rewrite it), or
    git's merge of two, with conflict markers (`merged`)."""
    return _reads_as_ours(text) or merged(text)


def merged(text: str) -> bool:
    """Whether `text` is what `git merge` leaves of two asset manifests that both
    branches rebuilt: conflict markers, each side an asset manifest."""
    if conflicts.OPEN not in text:
        return False
    try:
        split = conflicts.sides(text)
    except conflicts.MarkerError:
        return False
    return split is not None and all(_reads_as_ours(side.text) for side in split)


def _reads_as_ours(text: str) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and set(data) == {"version", "images"}


def plan_asset_manifest(
    target: str, *, wanted: str | None, current: str | None, force: bool = False
) -> FileAction:
    """Whether the manifest at `target` must be written: `wanted` is its text from the
    lock as it stands (None: images are about to change, so it will differ),
    `current` the file's text (None: missing; UNREADABLE: not text). A file that is
    not an asset manifest (a README, the project's own files) is never replaced
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

    stranger = current is not None and (current == UNREADABLE or not is_ours(current))
    if stranger and force:
        return act(FileState.BUILD, "a file nebula-build did not write; --force replaces it", True)
    if stranger:
        return act(FileState.CONFLICT, "a file nebula-build did not write is in the way")
    if current is not None and merged(current):
        return act(FileState.BUILD, "git left merge conflict markers in it")
    if wanted is None:
        return act(FileState.BUILD, "images change")
    if current is None:
        return act(FileState.BUILD, "missing")
    if current != wanted:
        return act(FileState.BUILD, "does not list the images as they are")
    return act(FileState.NOOP, "up to date")
