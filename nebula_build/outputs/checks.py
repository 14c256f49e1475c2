"""Acceptance checks: what each delivered file must satisfy before it is written.

A check that fails fails the image like a failed generation: the files are not
written, the lock does not record it, and the build exits 1 with the check and
its measured value. The original stays in the cache, so loosening a check (an
output option) re-processes it with no generation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nebula_build.core.sprite import describe_check
from nebula_build.errors import OutputRejectedError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: alpha at or above which a pixel counts as opaque
OPAQUE = 128


def measure(name: str, data: bytes, image: PILImage) -> float | bool | int:
    """The value check `name` looks at, on the main file's bytes and pixels."""
    if name == "max_kb":
        return round(len(data) / 1024, 2)
    if name == "square":
        return image.width == image.height
    if name == "alpha":
        return transparent_share(image) > 0
    if name == "min_opaque":
        return round(opaque_share(image), 4)
    return colour_count(image)


def passes(name: str, limit: Any, value: float | bool | int) -> bool:
    if name.startswith("max_"):
        return bool(value <= limit)
    if name.startswith("min_"):
        return bool(value >= limit)
    return bool(value) or limit is False


def run(checks: Mapping[str, Any], data: bytes, image: PILImage) -> dict[str, Any]:
    """Each check's measured value; raises OutputRejectedError naming every check that
    failed and what it measured."""
    values = {name: measure(name, data, image) for name in checks}
    failed = [name for name, limit in checks.items() if not passes(name, limit, values[name])]
    if failed:
        described = "; ".join(
            f"{describe_check(name, checks[name])} (got {shown(name, values[name])})"
            for name in failed
        )
        raise OutputRejectedError(f"check failed: {described}", checks=values)
    return values


def shown(name: str, value: float | bool | int) -> str:
    """A measured value as a message shows it."""
    if name == "max_kb":
        return f"{value:g} KiB"
    if name == "alpha":
        return "no transparent pixel" if not value else "transparent pixels"
    if name == "square":
        return "not square" if not value else "square"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _alpha(image: PILImage) -> PILImage | None:
    if "A" not in image.getbands() and "transparency" not in image.info:
        return None
    return image.convert("RGBA").getchannel("A")


def transparent_share(image: PILImage) -> float:
    """Share of the pixels that are not fully opaque."""
    alpha = _alpha(image)
    if alpha is None:
        return 0.0
    histogram = alpha.histogram()
    return 1 - histogram[255] / (image.width * image.height)


def opaque_share(image: PILImage) -> float:
    """Share of the pixels with alpha at least OPAQUE."""
    alpha = _alpha(image)
    if alpha is None:
        return 1.0
    return sum(alpha.histogram()[OPAQUE:]) / (image.width * image.height)


def colour_count(image: PILImage) -> int:
    """Distinct RGB colours among the visible pixels (alpha above zero)."""
    rgba = image.convert("RGBA")
    colours: list[tuple[int, tuple[int, int, int, int]]] = (
        rgba.getcolors(maxcolors=rgba.width * rgba.height) or []  # type: ignore[assignment]
    )
    return len({(r, g, b) for _, (r, g, b, a) in colours if a > 0})
