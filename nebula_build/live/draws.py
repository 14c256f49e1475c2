"""The candidate draws the gallery shows: which draws each image has, which is picked,
which the local cache holds; their bytes for the live server, and copies of them
beside the offline page. A draw whose output steps change its pixels (a transparent
background, `pixel_grid`, `palette`, `trim`…) is shown as its output would be.

Only draws this tool cached on this account are shown (what `pick` can switch to
without paying), and their bytes are read through the store, which checks them
against their digest. Their type comes from their bytes, never from a name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from nebula_build.core.plan import Plan
from nebula_build.core.spec import AssetSpec
from nebula_build.core.sprite import MAX_PALETTE_BYTES, palette_colours
from nebula_build.engine.candidates import picked
from nebula_build.engine.prepare import Prepared
from nebula_build.errors import OutputRejectedError, TooLargeError, UnsafePathError
from nebula_build.imaging import sniff
from nebula_build.outputs.encode import Encoding, encoding_for, render
from nebula_build.state.cache import CorruptEntryError, Store
from nebula_build.state.guard import Guard
from nebula_build.state.inputs import InputSnapshot
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
    #: how the draw is shown where its output steps change its pixels: as its output
    shown_as: Encoding | None = None
    #: the seed it was made with, where the image declares one
    seed: int | None = None

    @property
    def pick_command(self) -> str:
        return f"nebula-build pick {shell_operands(self.image, self.index)}"


def image_draws(plan: Plan, prepared: Prepared, lock: Entries) -> dict[str, tuple[Draw, ...]]:
    """The draws of every image of the plan that has candidates, by image name."""
    chosen = picked(prepared.specs, lock, on_disk=prepared.held_draw)
    palettes = _palette_reader(prepared)
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
            shown_as = _shown_as(drawn, palettes)
            draws.append(
                Draw(action.image, index, key, picked_now, cached, shown_as, seed=drawn.seed)
            )
        result[action.image] = tuple(draws)
    return result


@dataclass(frozen=True)
class DrawBytes:
    data: bytes
    media_type: str
    extension: str


def _shown_as(spec: AssetSpec, palettes: Callable[[str], tuple[str, ...]]) -> Encoding | None:
    """How a draw of `spec` is shown: as its output's pixels (keyed, snapped to its grid,
    fitted to its size, quantised, trimmed), as a PNG; None where no output step changes
    them and the draw's own bytes are shown. A palette file that cannot be read now
    leaves the draw unquantised."""
    if spec.key_color is None and not spec.sprite:
        return None
    encoding = encoding_for(spec)
    steps = encoding.steps
    colours: tuple[str, ...] = ()
    if (path := spec.palette_file) is not None and not (colours := palettes(path)):
        steps = tuple((name, value) for name, value in steps if name != "palette")
    return replace(
        encoding,
        format="png",
        quality=None,
        lossless=None,
        variants=(),
        texts=(),
        steps=steps,
        checks=(),
        palette=colours,
    )


def _palette_reader(prepared: Prepared) -> Callable[[str], tuple[str, ...]]:
    """The colours of a palette file by its project path, each read once; none where it
    cannot be read (or is no palette)."""
    read: dict[str, tuple[str, ...]] = {}
    inputs = prepared.inputs or InputSnapshot(prepared.guard)  # never outside the project

    def colours(path: str) -> tuple[str, ...]:
        if path not in read:
            read[path] = ()
            try:
                data = inputs.read_small(path, MAX_PALETTE_BYTES)
                if data is not None:
                    read[path] = palette_colours(data, path)
            except (TooLargeError, ValueError):
                pass
        return read[path]

    return colours


def read_draw(store: Store, key: str, shown_as: Encoding | None = None) -> DrawBytes | None:
    """A draw's bytes from the cache, checked against their digest, if they are an
    image a browser shows; None otherwise (missing, corrupt, unverified, other). With
    `shown_as`, the draw as its output would be, as a PNG (its own bytes where it cannot
    be: a transparency that refuses it)."""
    try:
        entry = store.get(key)
    except CorruptEntryError:
        return None
    if entry is None or entry.digest is None:
        return None
    kind = sniff(entry.data)
    if kind not in MEDIA_TYPES:
        return None
    if shown_as is not None:
        rendered = _rendered(entry.data, shown_as)
        if rendered is not None:
            return DrawBytes(rendered, MEDIA_TYPES["png"], _EXTENSIONS["png"])
    return DrawBytes(entry.data, MEDIA_TYPES[kind], _EXTENSIONS[kind])


def _rendered(data: bytes, shown_as: Encoding) -> bytes | None:
    """The draw as its output would be; None where it cannot be (refused)."""
    from PIL import Image

    try:
        return render(data, shown_as)[0]
    except (OutputRejectedError, OSError, ValueError, Image.DecompressionBombError):
        return None


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
        found = read_draw(store, draw.generation_key, draw.shown_as)
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
