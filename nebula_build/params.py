"""The generation parameters: one definition for every place that names them.

Each `Param` says what a manifest may write (type, range, description: the JSON
schema reads these), whether every model takes it, how it enters the generation
key and the request (an input file by content digest and by bytes), what a
model that does not take it means (an error, or for `seed` a note), and how the
AUTOMATIC1111-style `parameters` record shows it. The manifest fields, the
resolver, `AssetSpec`'s canonical form, the lock's `params`, the request a
backend gets, the Nebula request body, the embedded metadata and `nebula-build
models` all read this table; a meta-test keeps the typed classes in step with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MIN_SIZE = 64
MAX_SIZE = 2048
#: what most models' sizes are a multiple of (a model may ask for more: Fill's 16)
COMMON_SIZE_STEP = 8
MAX_SEED = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter that shapes the pixels."""

    name: str
    type: type[str] | type[int] | type[float]
    description: str
    #: taken by every model; the others only where a model's `ModelSupport` says so
    universal: bool = False
    #: an input file: its content digest enters the key, its bytes the request
    file: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    #: a manifest may not set it to ""
    nonempty: bool = False
    #: on a model that does not take it: an error, or kept in the key with a note (a
    #: seed still marks a new draw, even where the model will not reproduce it)
    unsupported: Literal["error", "note"] = "error"
    #: its label in the A1111 `parameters` record, if it is there: a text on a line of
    #: its own, a number on the settings line
    a1111: str | None = None

    @property
    def key_field(self) -> str:
        """The `AssetSpec` attribute hashed into the key: a file by its digest."""
        return f"{self.name}_digest" if self.file else self.name


PARAMS: tuple[Param, ...] = (
    Param("prompt", str, "What the image shows.", universal=True, nonempty=True),
    Param(
        "negative_prompt",
        str,
        "What the image must not show (models that take it: SDXL).",
        a1111="Negative prompt",
    ),
    Param(
        "width",
        int,
        "Width in pixels: a multiple of 8 (16 for Fill).",
        universal=True,
        minimum=MIN_SIZE,
        maximum=MAX_SIZE,
    ),
    Param(
        "height",
        int,
        "Height in pixels: a multiple of 8 (16 for Fill).",
        universal=True,
        minimum=MIN_SIZE,
        maximum=MAX_SIZE,
    ),
    Param("num_steps", int, "Denoising steps.", minimum=1, maximum=500, a1111="Steps"),
    Param(
        "guidance_scale",
        float,
        "How closely to follow the prompt.",
        minimum=0,
        maximum=100,
        a1111="CFG scale",
    ),
    Param(
        "seed",
        int,
        "Random seed; changing it asks for a new draw. Reproducible only on models that "
        "take a seed.",
        minimum=0,
        maximum=MAX_SEED,
        unsupported="note",
        a1111="Seed",
    ),
    Param(
        "image",
        str,
        "Inpainting input image: a path relative to the manifest (JPG, PNG, WebP).",
        file=True,
        nonempty=True,
    ),
    Param(
        "mask",
        str,
        "Inpainting mask, same size as the image: white marks the area to repaint.",
        file=True,
        nonempty=True,
    ),
)

BY_NAME: dict[str, Param] = {param.name: param for param in PARAMS}
#: the parameters a model may or may not take: what `ModelSupport.params` lists
OPTIONAL: tuple[str, ...] = tuple(param.name for param in PARAMS if not param.universal)
#: parameters that are an error, not a note, on a model that does not take them
STRICT: frozenset[str] = frozenset(
    param.name for param in PARAMS if not param.universal and param.unsupported == "error"
)
#: the text parameters `{placeholder}`s fill in
TEXT: tuple[str, ...] = tuple(p.name for p in PARAMS if p.type is str and not p.file)
FILES: tuple[str, ...] = tuple(param.name for param in PARAMS if param.file)
