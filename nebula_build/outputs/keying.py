"""Transparency from a key colour: soft alpha, despill, and the results refused.

Models that cannot return alpha are asked for a flat background of a key colour
(`core.sprite.key_suffix`); here the original becomes RGBA. A pixel far from the
key is opaque, one close to it transparent; in between (the anti-aliased edge) the
alpha is the share of the subject's own colour in the pixel, found by projecting
the pixel onto the line from the key to the nearest solid subject colour, and with
despill the key's share is taken out of its colour, so no fringe of the key stays
around the sprite. numpy is imported inside the functions: only an image that asks
for transparency pays for it.

Before keying, an original is refused when its background is not the key colour
(the model ignored it), when it is a painted checkerboard (the model drew
"transparency"), or when too little of it would become transparent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nebula_build.core.sprite import DEFAULT_SOFTNESS, KEYS
from nebula_build.errors import OutputRejectedError

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

#: distance from the key (largest channel difference, 0-1) under which a pixel is
#: wholly the key: JPEG noise and a model's slightly uneven fill stay transparent
CLEAR = 0.12
#: share of the border that must be the key colour
MIN_BORDER_SHARE = 0.6
#: share of the image that must become transparent
MIN_TRANSPARENT = 0.05
#: passes that carry solid subject colours outward over the soft edge
_SPREAD = 6


@dataclass(frozen=True, slots=True)
class Keying:
    """How an image's key colour becomes alpha."""

    key: str
    softness: float = DEFAULT_SOFTNESS
    despill: bool = True

    @property
    def rgb(self) -> tuple[int, int, int]:
        value = int(self.key[1:], 16)
        return (value >> 16) & 255, (value >> 8) & 255, value & 255


def has_alpha(image: PILImage) -> bool:
    """Whether the backend returned real transparency (some pixel is not opaque)."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return False
    low, _ = image.convert("RGBA").getchannel("A").getextrema()
    return bool(low < 255)  # type: ignore[operator]


def apply_key(image: PILImage, keying: Keying) -> PILImage:
    """`image` as RGBA: its own alpha where the backend gave one, otherwise the key
    colour made transparent. Raises OutputRejectedError for an original to refuse."""
    from PIL import Image

    if has_alpha(image):
        return image.convert("RGBA")
    import numpy as np

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    refuse_background(rgb, keying)
    rgba = key_out(rgb, keying)
    return Image.fromarray(rgba, "RGBA")


def distance(rgb: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """Each pixel's distance from the key: its largest channel difference, 0-1."""
    import numpy as np

    difference: np.ndarray = np.abs(rgb - np.asarray(key, dtype=np.float32)).max(axis=2)
    return difference / 255.0


def key_out(rgb: np.ndarray, keying: Keying) -> np.ndarray:
    """RGBA uint8 pixels of `rgb` (float32, H×W×3) with the key made transparent."""
    import numpy as np

    key = np.asarray(keying.rgb, dtype=np.float32)
    ramp = np.clip((distance(rgb, keying.rgb) - CLEAR) / max(keying.softness, 1e-3), 0.0, 1.0)
    # Far from the key is not yet solid: an edge pixel half the subject's is far too.
    # The core is what lies two pixels inside that; the band between is measured.
    core = _erode(_erode(ramp >= 1.0))
    subject, known = _spread(rgb, core)
    towards = subject - key
    reach = (towards * towards).sum(axis=2)
    edge = (ramp > 0) & ~core & known & (reach > 1.0)
    projected = ((rgb - key) * towards).sum(axis=2) / np.maximum(reach, 1.0)
    # softness scales the edge about its middle: the default keeps the measured alpha,
    # less makes it harder (towards a cut-out), more makes it softer
    steep = DEFAULT_SOFTNESS / max(keying.softness, 1e-3)
    alpha = np.where(edge, np.clip(0.5 + (projected - 0.5) * steep, 0.0, 1.0), ramp)
    colour = rgb
    if keying.despill:
        visible = alpha > 0
        share = np.where(visible, alpha, 1.0)[..., None]
        colour = np.where(visible[..., None], key + (rgb - key) / share, rgb)
    out = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(colour), 0, 255)
    out[..., 3] = np.rint(alpha * 255)
    out[..., :3][out[..., 3] == 0] = 0  # no key colour hidden under zero alpha
    return out


def _spread(rgb: np.ndarray, solid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The colour of the nearest solid subject pixel, carried a few pixels outward
    from the solid area (the mean of solid neighbours), and where it is known."""
    import numpy as np

    colour = np.where(solid[..., None], rgb, 0.0)
    known = solid.copy()
    for _ in range(_SPREAD):
        total = np.zeros_like(colour)
        count = np.zeros(known.shape, dtype=np.float32)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
            shifted_known = _shift(known, dy, dx)
            total += np.where(shifted_known[..., None], _shift(colour, dy, dx), 0.0)
            count += shifted_known
        grow = ~known & (count > 0)
        colour[grow] = total[grow] / count[grow][:, None]
        known = known | grow
    return colour, known


def _erode(mask: np.ndarray) -> np.ndarray:
    """`mask` less every pixel with a neighbour outside it (the image's edge counts)."""
    out = mask.copy()
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)):
        out &= _shift(mask, dy, dx)
    return out


def _shift(array: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`array` moved by (dy, dx), the edge it leaves filled with zeros."""
    import numpy as np

    out = np.zeros_like(array)
    height, width = array.shape[:2]
    ys, yd = (slice(0, height - dy), slice(dy, height)) if dy >= 0 else _back(height, -dy)
    xs, xd = (slice(0, width - dx), slice(dx, width)) if dx >= 0 else _back(width, -dx)
    out[yd, xd] = array[ys, xs]
    return out


def _back(size: int, step: int) -> tuple[slice, slice]:
    return slice(step, size), slice(0, size - step)


def refuse_background(rgb: np.ndarray, keying: Keying) -> None:
    """Raise OutputRejectedError when `rgb` is no sprite on the key colour."""
    border = _border(rgb)
    if _checkerboard(border):
        raise OutputRejectedError(
            f"the background is a painted checkerboard, not the key colour {keying.key}: "
            f"the model drew 'transparency'; {_another_key(keying)}"
        )
    near = distance(border[None, ...], keying.rgb)[0] < CLEAR + keying.softness / 2
    share = float(near.mean())
    if share < MIN_BORDER_SHARE:
        raise OutputRejectedError(
            f"the key colour {keying.key} is not the background: it is {share:.0%} of the "
            f"border (needs {MIN_BORDER_SHARE:.0%}); {_another_key(keying)}"
        )
    clear = float((distance(rgb, keying.rgb) < CLEAR).mean())
    if clear < MIN_TRANSPARENT:
        raise OutputRejectedError(
            f"too little becomes transparent: {clear:.1%} of the image is the key colour "
            f"{keying.key} (needs {MIN_TRANSPARENT:.0%}); {_another_key(keying)}"
        )


def _border(rgb: np.ndarray) -> np.ndarray:
    """The outermost ring of pixels, as one N×3 row, clockwise from the top left."""
    import numpy as np

    return np.concatenate((rgb[0, :], rgb[1:, -1], rgb[-1, -2::-1], rgb[-2:0:-1, 0]))


def _checkerboard(border: np.ndarray) -> bool:
    """Whether the border alternates between two flat greys, as painted transparency
    does: each of two low-saturation colours holds at least a quarter of it, together
    nearly all of it, and they change places many times."""
    import numpy as np

    grey = (border.max(axis=1) - border.min(axis=1)) < 24
    level = np.rint(border.mean(axis=1) / 16)
    values, counts = np.unique(level[grey], return_counts=True)
    if len(values) < 2:
        return False
    top = np.argsort(counts)[-2:]
    if counts[top].min() < len(border) / 4 or counts[top].sum() < 0.85 * len(border):
        return False
    light, dark = values[top]
    if abs(light - dark) < 1:
        return False
    pattern = level[np.isin(level, values[top]) & grey]
    changes = int((pattern[1:] != pattern[:-1]).sum())
    return changes >= 8


def _another_key(keying: Keying) -> str:
    other = next(hex_ for hex_, _, _ in KEYS if hex_ != keying.key.upper())
    return f'try another key (key = "{other}") or another seed'
