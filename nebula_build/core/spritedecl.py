"""The sprite keys of `images.toml`: transparency, cleanup and acceptance checks.

Allowed in `[defaults]`, a style and per image, like the output options; how they
are resolved is in `resolve.py`, what they do to pixels in `outputs/sprites.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nebula_build.core.sprite import PALETTES

#: a colour as a key takes it: `#RRGGBB`
COLOUR_PATTERN = r"^#[0-9A-Fa-f]{6}$"

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class ChecksDecl(BaseModel):
    """`checks = {...}`: what each delivered file must satisfy; one that fails fails
    the image and the build, like a failed generation."""

    model_config = _STRICT

    alpha: Literal["required"] | None = Field(
        None, description='"required": the file must have transparent pixels.'
    )
    max_kb: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="The file's size, at most, in KiB."
    )
    max_colors: int | None = Field(
        None, ge=1, le=1 << 24, description="Distinct colours of the visible pixels, at most."
    )
    min_opaque: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Share of the pixels that are opaque (alpha at least half), at least.",
    )
    square: bool | None = Field(None, description="true: the file must be as wide as high.")


class SpriteFields(BaseModel):
    """Transparency, cleanup and checks; changing any but `background` and `key`
    never regenerates."""

    model_config = _STRICT

    background: Literal["transparent", "opaque"] | None = Field(
        None,
        description='"transparent": keep the alpha a backend returns, else generate on a '
        "key colour (the prompt asks for it) and make it transparent with soft edges; "
        "\"opaque\" (the default) undoes a style's or [defaults]' transparency.",
    )
    key: str | None = Field(
        None,
        pattern=COLOUR_PATTERN,
        description='The key colour for background = "transparent", e.g. "#FF00FF"; by '
        "default one far from the colours the prompt names (magenta, green or blue).",
    )
    key_softness: float | None = Field(
        None,
        ge=0.01,
        le=1,
        allow_inf_nan=False,
        description="Width of the soft edge between key and subject, as a colour distance "
        "0-1 (default 0.25); an output step.",
    )
    despill: bool | None = Field(
        None,
        description="Take the key colour's share out of the soft edge's pixels (default "
        "true); an output step.",
    )
    pixel_grid: int | None = Field(
        None,
        ge=2,
        le=256,
        description="Snap fake pixel art to a true grid of N×N-pixel cells (each cell one "
        "colour, its median) before any resize.",
    )
    palette: int | str | None = Field(
        None,
        description="Quantise to N colours (2-256), to a named palette ("
        + ", ".join(PALETTES)
        + '), or to a .hex palette file (one RRGGBB colour a line, e.g. "palettes/pico8.hex", '
        "Lospec's format); no dithering. Alpha is kept.",
    )
    trim: bool | None = Field(
        None, description="Crop to the bounding box of the visible (non-transparent) pixels."
    )
    pad: int | None = Field(
        None, ge=0, le=256, description="Transparent pixels added around the image."
    )
    extrude: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Repeat the edge pixels outward N times (against bleeding in atlases).",
    )
    checks: ChecksDecl | None = Field(
        None,
        description='Acceptance checks on the delivered file, e.g. {alpha = "required", '
        "max_kb = 64, max_colors = 16, min_opaque = 0.05, square = true}.",
    )
