"""Sprite options, pure: key colours, the prompt suffix that asks for one, and the
output steps and checks as the spec carries them.

Transparency is the one sprite option that shapes the generation: a model that
cannot return alpha is asked for a flat background of a key colour, so the key
and its prompt suffix enter the generation key. Everything else here (how the key
becomes alpha, cleanup, checks) is an output step: it enters the output key only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: the keys chosen automatically, in order of preference, and the words in a prompt
#: that rule each out (a subject of that colour would be keyed away with it)
KEYS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "#FF00FF",
        "magenta",
        ("magenta", "pink", "purple", "violet", "fuchsia", "lilac", "orchid", "rose"),
    ),
    (
        "#00FF00",
        "green",
        ("green", "lime", "grass", "leaf", "leaves", "forest", "slime", "emerald", "moss"),
    ),
    ("#0000FF", "blue", ("blue", "sky", "water", "ocean", "sea", "ice", "sapphire", "navy")),
)
#: the default width of the soft edge between key and subject (a colour distance, 0-1)
DEFAULT_SOFTNESS = 0.25
_NAMES = {hex_: name for hex_, name, _ in KEYS}

#: the output steps an image may set, in the order they run (keying comes first)
STEPS = ("pixel_grid", "palette", "trim", "extrude", "pad")
#: the step a transparent image gets where it is resampled smoothly (a lanczos
#: `resize` or `widths`): alpha under this is cleared, and a transparent pixel's
#: colour made (0, 0, 0). Resampling rings: it leaves a halo of near-invisible pixels
#: (alpha 1-3, with any colour) that `trim` would keep and `max_colors` count
ALPHA_FLOOR_STEP = "alpha_floor"
ALPHA_FLOOR = 8
#: the step a transparent image gets where `palette` is a colour count: the colours
#: are chosen from its visible pixels only (its transparent ones had taken one)
VISIBLE_PALETTE_STEP = "palette_visible"
#: the step an image with both `extrude` and `pad` gets: its edge is repeated, then
#: the padding added around it (extruding the padding had repeated transparent pixels)
EXTRUDE_FIRST_STEP = "extrude_before_pad"
#: what `plan` says of an output re-made only because the tool now adds a step
ADDED_STEPS = {
    ALPHA_FLOOR_STEP: (
        "now clears the halo of near-invisible pixels its resize leaves around a transparent sprite"
    ),
    VISIBLE_PALETTE_STEP: (
        "now gives every colour of its palette to visible pixels (its transparent ones took one)"
    ),
    EXTRUDE_FIRST_STEP: (
        "now repeats its edge pixels inside its padding (`extrude` had repeated the padding)"
    ),
}
#: the acceptance checks an image may set
CHECKS = ("alpha", "max_kb", "max_colors", "min_opaque", "square")
#: the palettes a manifest may name instead of a colour count
PALETTES: dict[str, tuple[str, ...]] = {
    "pico8": (
        *("000000", "1D2B53", "7E2553", "008751", "AB5236", "5F574F", "C2C3C7", "FFF1E8"),
        *("FF004D", "FFA300", "FFEC27", "00E436", "29ADFF", "83769C", "FF77A8", "FFCCAA"),
    ),
}


#: what a palette file is: Lospec's .hex, one RRGGBB colour a line
PALETTE_SUFFIX = ".hex"
MAX_PALETTE = 256
#: the largest palette file read: 256 colours with a comment on every line fit many
#: times over; anything bigger is no palette (and is never parsed)
MAX_PALETTE_BYTES = 64 << 10


def palette_colours(data: bytes, path: str) -> tuple[str, ...]:
    """The colours of a .hex palette file (RRGGBB, optionally with #, one a line;
    blank lines and `;` comments skipped). ValueError naming the file and line, never
    quoting the file's content (a palette may be a link to a file that holds secrets)."""
    if len(data) > MAX_PALETTE_BYTES:
        raise ValueError(palette_too_large(path, len(data)))
    colours: list[str] = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        value = line.split(";")[0].strip().removeprefix("#")
        if not value:
            continue
        if len(value) != 6 or any(c not in "0123456789abcdefABCDEF" for c in value):
            raise ValueError(f"{path}:{number}: not a colour (RRGGBB)")
        if len(colours) == MAX_PALETTE:
            raise ValueError(f"{path}:{number}: a palette has 1-{MAX_PALETTE} colours (more)")
        colours.append(value.upper())
    if not colours:
        raise ValueError(f"{path}: a palette has 1-{MAX_PALETTE} colours (found none)")
    return tuple(colours)


def palette_too_large(path: str, size: int | None) -> str:
    """Why a palette file of `size` bytes (None: more than the limit, grown while being
    read) is refused."""
    this = "more" if size is None else f"{size:,} bytes"
    return f"{path}: a palette file is at most {MAX_PALETTE_BYTES // 1024} KiB (this one is {this})"


def choose_key(prompt: str) -> str:
    """The first key colour (#RRGGBB) that no word of the prompt rules out."""
    words = {word.strip(".,;:!?()[]\"'").lower() for word in prompt.split()}
    for hex_, _, ruled_out in KEYS:
        if not words.intersection(ruled_out):
            return hex_
    return KEYS[0][0]


def key_suffix(key: str) -> str:
    """What the prompt adds to ask for the key colour as a flat background."""
    name = _NAMES.get(key.upper())
    colour = f"{name} ({key.upper()})" if name else key.upper()
    return f"isolated on a flat solid {colour} background, no shadow, no gradient"


def added_key_suffix(prompt: str) -> str | None:
    """The words a transparent image's prompt ends with to ask for its key colour (see
    `key_suffix`), with the comma before them; None where it ends otherwise."""
    found = _ANY_KEY_SUFFIX.search(prompt)
    return None if found is None else found[0]


_ANY_KEY_SUFFIX = re.compile(
    r", isolated on a flat solid [^,]{1,40} background, no shadow, no gradient\Z"
)


def without_key_suffix(prompt: str, key: str | None) -> str:
    """`prompt` as the manifest asks for it: without what a transparent image's prompt
    adds to ask for its key colour, which the delivered file no longer shows."""
    if key is None:
        return prompt
    return prompt.removesuffix(f", {key_suffix(key)}")


def pairs(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as the spec stores them: sorted (name, value) pairs, unset ones left out."""
    return tuple(sorted((name, value) for name, value in values.items() if value is not None))


def describe_check(name: str, value: Any) -> str:
    """A check as `plan` lists it: `max_kb ≤ 64`, `alpha required`, `square`."""
    if name.startswith("max_"):
        return f"{name} ≤ {value:g}" if isinstance(value, float) else f"{name} ≤ {value}"
    if name.startswith("min_"):
        return f"{name} ≥ {value:g}"
    if value is True:
        return name
    return f"{name} {value}"


def matrix_values(base: str, matrix: dict[str, list[str | int]]) -> dict[str, dict[str, str]]:
    """Each image a matrix makes, by name, with its value of every dimension (named the
    way `expand` names them)."""
    import itertools

    axes = list(matrix.items())
    found = {}
    for combination in itertools.product(*(values for _, values in axes)):
        name = f"{base}[{','.join(str(value) for value in combination)}]"
        found[name] = {key: str(value) for (key, _), value in zip(axes, combination, strict=True)}
    return found


def rows_matrix_values(
    base: str, matrix: dict[str, list[str | int]], names: Iterable[str]
) -> dict[str, dict[str, str]]:
    """Each of `names`, images of a declaration with rows and a matrix
    (product[<id>,<value>,…]), with its value of every dimension: neither the id nor
    a value has a comma there (`rowimages` refuses them)."""
    found = {}
    for name in names:
        parts = name[len(base) + 1 : -1].split(",")[1:]
        found[name] = dict(zip(matrix, parts, strict=True))
    return found
