"""The shapes of the JSON files nebula-build writes for other tools.

Kept apart from the code that writes them: only `nebula-build schema` and the
tests need pydantic models of these, and `plan` must not pay to build them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_CLOSED = ConfigDict(extra="forbid")


class AssetFile(BaseModel):
    """One file: the main output or one of its responsive variants."""

    model_config = _CLOSED

    path: str = Field(description="Path relative to the folder of images.toml.")
    url: str = Field(
        description="Path relative to the folder of this JSON file, as a URL: "
        "percent-encoded (a space is %20), so it can go into src and srcset as it is."
    )
    width: int = Field(description="Width in pixels.")
    height: int = Field(description="Height in pixels.")
    format: Literal["png", "jpeg", "webp", "avif"] = Field(description="Image format.")
    bytes: int = Field(description="File size in bytes.")


class AssetImage(BaseModel):
    """One declared image and every file made from it: its main output, then variants."""

    model_config = _CLOSED

    alt: str = Field(description="Alt text: the image's `alt`, else its prompt.")
    generation_key: str = Field(description="What made the pixels (see images.lock).")
    row: str | None = Field(
        None,
        description="For an image made from a data row (`rows`): the row's id, the value of "
        "its `id` column, to join the image to the site's own data. Absent otherwise.",
    )
    files: list[AssetFile] = Field(
        description=(
            "The main output first (the `src`, `width` and `height` of an <img>), then the "
            "variants, narrowest first: with it, every entry of a `srcset`."
        )
    )


class AssetManifest(BaseModel):
    """The asset manifest nebula-build writes."""

    model_config = _CLOSED

    version: Literal[1] = Field(description="Format version; always 1.")
    images: dict[str, AssetImage] = Field(description="Images by name, sorted.")


class _Rect(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: int
    y: int
    w: int
    h: int


class _Size(BaseModel):
    model_config = ConfigDict(extra="forbid")
    w: int
    h: int


class Frame(BaseModel):
    """One sprite in the sheet."""

    frame: _Rect
    rotated: bool = False
    trimmed: bool = False
    spriteSourceSize: _Rect
    sourceSize: _Size


class FrameMapMeta(BaseModel):
    app: str
    image: str
    format: str
    size: _Size
    scale: str = "1"
    nebula_build: dict[str, str] = Field(default_factory=dict)


class FrameMap(BaseModel):
    """TexturePacker / Phaser "JSON hash"."""

    frames: dict[str, Frame]
    meta: FrameMapMeta


def asset_manifest_schema() -> dict[str, Any]:
    """schema/assets.schema.json."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nebula-build.dev/schema/assets.schema.json",
        "title": "nebula-build asset manifest",
        **AssetManifest.model_json_schema(),
    }
