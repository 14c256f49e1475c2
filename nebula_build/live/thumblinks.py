"""Which thumbnail each gallery card shows, made where missing (`outputs.thumbnails`).

An up-to-date image's output digest is the lock's (the plan found the file as the
lock records it, from its stat): nothing is read. Any other image's file on disk,
when there is one, is read and hashed: there are few of those.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nebula_build.core.plan import ActionKind, Plan
from nebula_build.errors import UserError
from nebula_build.imaging import MAX_BYTES
from nebula_build.outputs.thumbnails import Made, Thumbnails, needs_thumbnail
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
    wanted: dict[str, str] = {}  # digest → output path
    for action in plan.actions:
        spec = action.spec
        if spec is None or action.output is None or not needs_thumbnail(spec.width, spec.height):
            continue
        if action.kind is ActionKind.NOOP and action.entry is not None:
            digest = action.entry.digest
        else:
            try:
                digest = hashlib.sha256(read(spec.output)).hexdigest()
            except (OSError, UserError):  # missing, or refused by the guard
                continue
        digests[spec.name] = digest
        wanted.setdefault(digest, spec.output)
    thumbs = Thumbnails(project.state_dir)
    made = thumbs.make(wanted, read)
    if link == "served":
        prefix = "/thumbs/"
    else:
        prefix = Path(os.path.relpath(thumbs.folder, base or project.root)).as_posix() + "/"
    links = {
        name: prefix + made.names[digest]
        for name, digest in digests.items()
        if digest in made.names
    }
    return ThumbLinks(links, made)
