"""`nebula-build init`: a starter manifest that builds on the first try."""

from __future__ import annotations

import re
from pathlib import Path

from nebula_build.errors import UserError
from nebula_build.state.project import MANIFEST_NAME, STATE_DIR, lock_name

STARTER = """\
# Images this project generates. `nebula-build plan` shows what would change,
# `nebula-build apply` makes it so. Commit this file and {lock}.
# Editor completion: `nebula-build schema > images.schema.json`, then put
# `#:schema ./images.schema.json` on the first line.
version = 1

[defaults]
# `preview` draws offline placeholders, free and instant. Switch to "nebula"
# (with NEBULA_API_KEY set) for real images, or to "diffusers" to run the
# models on your own GPU (torch for your CUDA version, then from the
# nebula-build checkout: pip install -e '.[local]').
backend = "preview"
model = "black-forest-labs/FLUX.1-schnell"
width = 1024
height = 1024

[images.hero]
prompt = "a lighthouse on a cliff at dusk, warm light, calm sea"
seed = 42
width = 1344
height = 768
output = "{images}/hero.png"

[images.icon]
prompt = "a paper crane, flat vector icon, pastel colors"
seed = 7
width = 512
height = 512
output = "{images}/icon.webp"
"""


def init_project(manifest: Path, *, force: bool = False) -> list[str]:
    """Write a starter manifest (images.toml, or the file -f names) and ignore
    `.nebula-build/` beside it; returns what it did. A link is never written through:
    a checkout's `images.toml` or `.gitignore` may lead anywhere."""
    from nebula_build.fsutil import atomic_write

    if manifest.is_symlink():
        raise UserError(
            f"{manifest} is a link; init writes a file of its own there: remove the link first"
        )
    if manifest.exists() and not manifest.is_file():
        raise UserError(f"{manifest} is there and is not a file; init writes a file there")
    if manifest.exists() and not force:
        raise UserError(f"{manifest} already exists; pass --force to overwrite it")
    folder = manifest.parent
    folder.mkdir(parents=True, exist_ok=True)
    starter = STARTER.format(lock=lock_name(manifest.name), images=images_folder(manifest))
    atomic_write(manifest, starter.encode("utf-8"), durable=False)
    return [f"wrote {manifest}", *_ignore_state(folder / ".gitignore")]


def _ignore_state(gitignore: Path) -> list[str]:
    """Add `.nebula-build/` to `gitignore` (a regular file, or none yet), read and
    written as bytes: a file in another encoding is added to as it is."""
    from nebula_build.fsutil import atomic_write

    line = f"{STATE_DIR}/".encode()
    if gitignore.is_symlink() or (gitignore.exists() and not gitignore.is_file()):
        return [f"left {gitignore} as it is (not a plain file): add {STATE_DIR}/ to it yourself"]
    existing = gitignore.read_bytes() if gitignore.exists() else b""
    if any(row.strip().rstrip(b"/") == line.rstrip(b"/") for row in existing.splitlines()):
        return []
    separator = b"" if not existing or existing.endswith(b"\n") else b"\n"
    atomic_write(gitignore, existing + separator + line + b"\n", durable=False)
    return [f"added {STATE_DIR}/ to {gitignore}"]


def images_folder(manifest: Path) -> str:
    """Where the starter's images go: `images/`, or for a second manifest in the
    folder (`-f other.toml`) `images/other/`, so that its first apply does not meet
    the files images.toml's starter wrote."""
    if manifest.name == MANIFEST_NAME:
        return "images"
    return f"images/{re.sub(r'[^A-Za-z0-9_-]', '-', manifest.stem) or 'other'}"


def enclosing_manifest(folder: Path) -> Path | None:
    """The images.toml of a project `folder` is inside, if any: the one commands run in
    the folder used until a manifest was written there."""
    for parent in folder.resolve().parents:
        if (parent / MANIFEST_NAME).is_file():
            return parent / MANIFEST_NAME
    return None
