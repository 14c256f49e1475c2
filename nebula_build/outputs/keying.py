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
#: the least share of the image that must differ from the key: a subject to keep
MIN_SUBJECT = 0.005
#: how far (pixels) an edge pixel looks for the subject's solid colour
_REACH = 6
#: the offsets within _REACH, nearest first
_OFFSETS = sorted(
    ((dy, dx) for dy in range(-_REACH, _REACH + 1) for dx in range(-_REACH, _REACH + 1)),
    key=lambda offset: offset[0] ** 2 + offset[1] ** 2,
)


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
    far = distance(rgb, keying.rgb)
    refuse_background(rgb, far, keying)
    rgba = key_out(rgb, far, keying)
    return Image.fromarray(rgba, "RGBA")


def check_original(image: PILImage, keying: Keying) -> None:
    """Raise OutputRejectedError for an original no output of its key could use (the
    same refusals as `apply_key`, without keying it): a candidate draw is checked so
    before it is cached."""
    if has_alpha(image):
        return
    import numpy as np

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    refuse_background(rgb, distance(rgb, keying.rgb), keying)


def distance(rgb: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """Each pixel's distance from the key: its largest channel difference, 0-1."""
    import numpy as np

    difference: np.ndarray = np.abs(rgb - np.asarray(key, dtype=np.float32)).max(axis=2)
    return difference / 255.0


def key_out(rgb: np.ndarray, far: np.ndarray, keying: Keying) -> np.ndarray:
    """RGBA uint8 pixels of `rgb` (float32, H×W×3) with the key made transparent; `far`
    is each pixel's `distance` from the key."""
    import numpy as np

    key = np.asarray(keying.rgb, dtype=np.float32)
    ramp = np.clip((far - CLEAR) / max(keying.softness, 1e-3), 0.0, 1.0)
    # Far from the key is not yet solid: an edge pixel half the subject's is far too.
    # The core is what lies two pixels inside that; the band between is measured.
    core = _erode(_erode(ramp >= 1.0))
    alpha = ramp
    ys, xs = np.nonzero((ramp > 0) & ~core)
    subject, known = _nearest(rgb, core, ys, xs)
    towards = subject - key
    reach = (towards * towards).sum(axis=1)
    measured = known & (reach > 1.0)
    ys, xs, towards, reach = ys[measured], xs[measured], towards[measured], reach[measured]
    projected = ((rgb[ys, xs] - key) * towards).sum(axis=1) / reach
    # softness scales the edge about its middle: the default keeps the measured alpha,
    # less makes it harder (towards a cut-out), more makes it softer
    steep = DEFAULT_SOFTNESS / max(keying.softness, 1e-3)
    alpha[ys, xs] = np.clip(0.5 + (projected - 0.5) * steep, 0.0, 1.0)
    out = np.empty((*rgb.shape[:2], 4), dtype=np.uint8)
    out[..., :3] = np.rint(rgb)
    if keying.despill:  # only a partly transparent pixel holds some of the key
        ys, xs = np.nonzero((alpha > 0) & (alpha < 1))
        share = alpha[ys, xs][:, None]
        out[ys, xs, :3] = np.clip(np.rint(key + (rgb[ys, xs] - key) / share), 0, 255)
    out[..., 3] = np.rint(alpha * 255)
    out[..., :3][out[..., 3] == 0] = 0  # no key colour hidden under zero alpha
    return out


def _nearest(
    rgb: np.ndarray, core: np.ndarray, ys: np.ndarray, xs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel (ys, xs): the colour of the nearest core pixel within _REACH
    pixels, and whether there is one. Only the edge's pixels are looked at: the work
    grows with the sprite's outline, not its area."""
    import numpy as np

    height, width = core.shape
    found = np.zeros(len(ys), dtype=bool)
    colour = np.zeros((len(ys), 3), dtype=np.float32)
    for dy, dx in _OFFSETS:  # nearest first: the first core pixel met is the nearest
        y = np.clip(ys + dy, 0, height - 1)
        x = np.clip(xs + dx, 0, width - 1)
        hit = ~found & core[y, x]
        found |= hit
        colour[hit] = rgb[y[hit], x[hit]]
    return colour, found


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


def refuse_background(rgb: np.ndarray, far: np.ndarray, keying: Keying) -> None:
    """Raise OutputRejectedError when `rgb` is no sprite on the key colour; `far` is
    each pixel's `distance` from the key."""
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
    clear = float((far < CLEAR).mean())
    if clear < MIN_TRANSPARENT:
        raise OutputRejectedError(
            f"too little becomes transparent: {clear:.1%} of the image is the key colour "
            f"{keying.key} (needs {MIN_TRANSPARENT:.0%}); {_another_key(keying)}"
        )
    if 1 - clear < MIN_SUBJECT:
        raise OutputRejectedError(
            f"no subject: {1 - clear:.1%} of the image differs from the key colour "
            f"{keying.key} (needs {MIN_SUBJECT:.1%}), nothing would stay visible; try "
            "another seed"
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
