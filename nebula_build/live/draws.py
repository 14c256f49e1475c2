"""The candidate draws the gallery shows: which draws each image has, which is picked,
which the local cache holds; their bytes for the live server, and copies of them
beside the offline page.

Only draws this tool cached on this account are shown (what `pick` can switch to
without paying), and their bytes are read through the store, which checks them
against their digest. Their type comes from their bytes, never from a name.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nebula_build.core.plan import Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.engine.candidates import picked
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import OutputRejectedError, UnsafePathError
from nebula_build.imaging import sniff
from nebula_build.outputs.keying import Keying
from nebula_build.state.cache import CorruptEntryError, Store
from nebula_build.state.guard import Guard
from nebula_build.state.lockfile import Entries
from nebula_build.text import shell_operands

#: the types a browser shows, by the name `imaging.sniff` gives them
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
_COPY_NAME = re.compile(r"[0-9a-f]{64}\.(?:png|jpg|webp)")
#: the folder, beside the offline page, that holds the copies
DRAWS_FOLDER = "draws"


@dataclass(frozen=True)
class Draw:
    """One candidate draw of an image."""

    image: str
    index: int
    generation_key: str
    picked: bool
    #: in the local cache, written by this tool: it can be shown and picked
    cached: bool
    #: how a transparent image's key colour becomes alpha: the draw is shown keyed
    keying: Keying | None = None
    #: the seed it was made with, where the image declares one
    seed: int | None = None

    @property
    def pick_command(self) -> str:
        return f"nebula-build pick {shell_operands(self.image, self.index)}"


def image_draws(plan: Plan, prepared: Prepared, lock: Entries) -> dict[str, tuple[Draw, ...]]:
    """The draws of every image of the plan that has candidates, by image name."""
    chosen = picked(prepared.specs, lock, on_disk=prepared.held_draw)
    result = {}
    for action in plan.actions:
        base = chosen.bases.get(action.image)
        if action.output is None or base is None or base.candidates < 2:
            continue
        # by key: an output that is none of the set's draws (pinned elsewhere) marks none
        output_key = chosen.specs[action.image].generation_key
        draws = []
        for index in range(base.candidates):
            drawn = base.drawn(index)
            key = drawn.generation_key
            cached = prepared.store.has_ours(key)
            picked_now = key == output_key
            keying = _keying(drawn)
            draws.append(
                Draw(action.image, index, key, picked_now, cached, keying, seed=drawn.seed)
            )
        result[action.image] = tuple(draws)
    return result


@dataclass(frozen=True)
class DrawBytes:
    data: bytes
    media_type: str
    extension: str


def _keying(spec: AssetSpec) -> Keying | None:
    if spec.key_color is None:
        return None
    steps = spec.steps
    return Keying(spec.key_color, steps["key_softness"], steps["despill"])


def read_draw(store: Store, key: str, keying: Keying | None = None) -> DrawBytes | None:
    """A draw's bytes from the cache, checked against their digest, if they are an
    image a browser shows; None otherwise (missing, corrupt, unverified, other). With
    `keying`, the draw as a transparent image shows it: keyed, as a PNG."""
    try:
        entry = store.get(key)
    except CorruptEntryError:
        return None
    if entry is None or entry.digest is None:
        return None
    kind = sniff(entry.data)
    if kind not in MEDIA_TYPES:
        return None
    if keying is not None:
        keyed = _keyed(entry.data, keying)
        if keyed is not None:
            return DrawBytes(keyed, MEDIA_TYPES["png"], _EXTENSIONS["png"])
    return DrawBytes(entry.data, MEDIA_TYPES[kind], _EXTENSIONS[kind])


def _keyed(data: bytes, keying: Keying) -> bytes | None:
    """The draw keyed like its output, as a PNG; None where it cannot be (refused)."""
    from PIL import Image

    from nebula_build.imaging import MAX_PIXELS
    from nebula_build.outputs.keying import apply_key

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as opened:
            keyed = apply_key(opened.copy(), keying)
    except (OutputRejectedError, OSError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    keyed.save(buffer, "PNG")
    return buffer.getvalue()


def copy_draws(
    draws: Iterable[Draw], store: Store, folder: Path, *, prefix: str = DRAWS_FOLDER
) -> dict[str, str]:
    """Copy the cached draws' bytes into `folder`/`prefix`/ (walked without following a
    link, written atomically); returns each copied draw's path, relative to `folder`,
    by generation key. A draw whose bytes cannot be read is left out, and copies an
    earlier page showed but this one does not are removed."""
    guard = Guard(folder)
    copied = {}
    for draw in draws:
        if not draw.cached:
            continue
        found = read_draw(store, draw.generation_key, draw.keying)
        if found is None:
            continue
        relative = f"{prefix}/{draw.generation_key}.{found.extension}"
        try:
            guard.write(relative, found.data, durable=False)
        except UnsafePathError:
            raise UnsafePathError(
                f"the gallery's {folder / prefix} is not a plain folder (a symbolic link?): "
                "remove it, or write the gallery elsewhere with --out"
            ) from None
        copied[draw.generation_key] = relative
    _remove_stale(guard, folder, prefix, keep=set(copied.values()))
    return copied


def _remove_stale(guard: Guard, folder: Path, prefix: str, *, keep: set[str]) -> None:
    """Remove the copies (by their name alone) that are not in `keep`; links are
    removed, never followed."""
    if (folder / prefix).is_symlink():
        return
    try:
        names = os.listdir(folder / prefix)
    except OSError:
        return
    for name in names:
        relative = f"{prefix}/{name}"
        if _COPY_NAME.fullmatch(name) and relative not in keep:
            guard.remove(relative)


def pickable(draws: Mapping[str, tuple[Draw, ...]]) -> dict[str, int]:
    """The images a page may pick for, with their number of draws."""
    return {name: len(items) for name, items in draws.items()}
