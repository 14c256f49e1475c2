"""Which thumbnail each gallery card shows, made where missing (`outputs.thumbnails`).

An up-to-date image's output digest is the lock's (the plan found the file as the
lock records it, from its stat); any other image's is the file index's (its stat
cache, hashing only a file it has not seen as it is): nothing is read but the
outputs that get a thumbnail now, and those are checked against their digest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from nebula_build.core.plan import ActionKind, Plan
from nebula_build.imaging import MAX_BYTES
from nebula_build.outputs.thumbnails import Made, Thumbnails, Wanted, needs_thumbnail
from nebula_build.state.fileindex import FileIndex
from nebula_build.state.guard import Guard
from nebula_build.state.project import Project


@dataclass(frozen=True)
class ThumbLinks:
    #: the thumbnail's address, by image name
    links: dict[str, str]
    made: Made


def thumbnail_links(
    plan: Plan,
    project: Project,
    files: FileIndex,
    *,
    link: Literal["relative", "served"] = "relative",
    base: Path | None = None,
) -> ThumbLinks:
    """The thumbnails of the plan's images whose output is larger than a thumbnail,
    made now where the folder lacks them; linked relative to `base` (a page on disk)
    or as `/thumbs/<name>` (the live server)."""
    guard = Guard(project.root, reserved=project.own_files)

    def read(relative: str) -> bytes:
        return guard.read(relative, what="output", limit=MAX_BYTES)

    digests: dict[str, str] = {}  # image name → its output's digest
    wanted: dict[str, Wanted] = {}  # digest → the output
    for action in plan.actions:
        spec = action.spec
        if spec is None or action.output is None or not needs_thumbnail(*spec.delivered_size):
            continue
        if action.kind is ActionKind.NOOP and action.entry is not None:
            digest: str | None = action.entry.digest
        else:
            digest = files.digest(spec.output)
        if digest is None:  # no file there
            continue
        digests[spec.name] = digest
        size = spec.file_size
        wanted.setdefault(
            digest, Wanted(spec.output, size or spec.delivered_size, size is not None)
        )
    thumbs = Thumbnails(project.state_dir)
    made = thumbs.make(wanted, read)
    if link == "served":
        prefix = "/thumbs/"
    else:
        prefix = quote(Path(os.path.relpath(thumbs.folder, base or project.root)).as_posix()) + "/"
    links = {
        name: prefix + made.names[digest]
        for name, digest in digests.items()
        if digest in made.names
    }
    return ThumbLinks(links, made)
