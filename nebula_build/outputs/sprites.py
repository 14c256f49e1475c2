"""Sprite cleanup, the output steps that run after keying: `pixel_grid` snaps fake
pixel art to true cells before any resize; after the resize `alpha_floor` clears a
transparent image's resampling halo (the tool sets it, never the manifest),
`palette` quantises, `trim` crops to the visible pixels, `extrude` repeats the edge
pixels outward and `pad` adds transparent room around them. Each is an output step: changing one
re-processes the cached original, never generates. numpy is imported only where a
step needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nebula_build.core.sprite import ALPHA_FLOOR_STEP, PALETTES, VISIBLE_PALETTE_STEP

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

#: the PNG text chunk a trimmed file carries: "x,y,w,h", where the delivered file sits
#: in the image of size w×h it would be untrimmed (padded and extruded like it): what
#: an atlas's spriteSourceSize and sourceSize say
TRIM_KEY = "nebula-build:trim"


def before_resize(image: PILImage, steps: Mapping[str, Any]) -> PILImage:
    """The steps that work on the generated pixels: `pixel_grid`."""
    cell = steps.get("pixel_grid")
    return snap_to_grid(image, cell) if cell else image


def after_resize(
    image: PILImage, steps: Mapping[str, Any], colours: tuple[str, ...] = ()
) -> tuple[PILImage, str | None]:
    """The steps on the delivered pixels, in order; with the trim box (TRIM_KEY's value)
    when `trim` cropped the image. `colours` are a palette file's, where `palette`
    names one."""
    floor = steps.get(ALPHA_FLOOR_STEP)
    if floor:
        image = clear_halo(image, floor)
    palette = steps.get("palette")
    if palette:
        image = quantise(image, colours or palette, visible=bool(steps.get(VISIBLE_PALETTE_STEP)))
        if floor:  # the palette's colour for (0, 0, 0) under zero alpha: made neutral again
            image = clear_halo(image, floor)
    box = None
    if steps.get("trim"):
        image, box = trim(image)
    if steps.get("extrude"):
        image = extrude(image, steps["extrude"])
    if steps.get("pad"):
        image = pad(image, steps["pad"])
    if box is not None:  # the delivered file's place in the image padded untrimmed
        grown = 2 * ((steps.get("pad") or 0) + (steps.get("extrude") or 0))
        x, y, width, height = map(int, box.split(","))
        box = f"{x},{y},{width + grown},{height + grown}"
    return image, box


def clear_halo(image: PILImage, floor: int) -> PILImage:
    """`image` less the halo a smooth resample leaves around a transparent subject.

    Pillow resamples RGBA premultiplied by alpha (no colour bleeds in from the
    transparent pixels) and clamps the result to 0-255, but the lanczos filter's
    lobes still reach past the subject's edge: a ring of pixels of alpha 1-3 whose
    colour, divided by that alpha again, is anything. Alpha under `floor` becomes 0,
    and every fully transparent pixel (0, 0, 0, 0): it compresses well and bleeds no
    colour into a neighbour when a GPU filters the texture. Pillow only, no numpy."""
    from PIL import Image

    if image.mode != "RGBA":
        return image
    alpha = image.getchannel("A").point([0] * floor + list(range(floor, 256)))
    out = Image.new("RGBA", image.size, (0, 0, 0, 0))
    out.paste(image, mask=alpha.point([0] + [255] * 255))  # a binary mask: exact copy
    out.putalpha(alpha)
    return out


def snap_to_grid(image: PILImage, cell: int) -> PILImage:
    """Each cell×cell block one colour (the median of its pixels, alpha included),
    the image's size unchanged: fake pixel art made true before a nearest resize.
    The manifest asks for a cell that divides the generated size; where a backend
    returned another size, the cells at the right and bottom edges are cut short."""
    import numpy as np
    from PIL import Image

    mode = "RGBA" if "A" in image.getbands() else "RGB"
    pixels = np.asarray(image.convert(mode))
    height, width = pixels.shape[:2]
    rows, cols = -(-height // cell), -(-width // cell)
    if rows * cell != height or cols * cell != width:  # short edge cells: NaN-padded
        padded = np.full((rows * cell, cols * cell, pixels.shape[2]), np.nan)
        padded[:height, :width] = pixels
        blocks = padded.reshape(rows, cell, cols, cell, -1)
        medians = np.nanmedian(blocks, axis=(1, 3))
    else:
        medians = np.median(pixels.reshape(rows, cell, cols, cell, -1), axis=(1, 3))
    cells = medians.round().astype(np.uint8).repeat(cell, axis=0).repeat(cell, axis=1)
    return Image.fromarray(np.ascontiguousarray(cells[:height, :width]), mode)


def quantise(
    image: PILImage, palette: int | str | tuple[str, ...], *, visible: bool = False
) -> PILImage:
    """The colours reduced to `palette` (a count, a named palette or RRGGBB colours),
    no dithering; the alpha channel kept as it is. With `visible`, a count's colours
    are chosen from the visible pixels only: the transparent ones take none."""
    from PIL import Image

    rgba = image.convert("RGBA")
    rgb = rgba.convert("RGB")
    if isinstance(palette, int) and visible and rgba.getchannel("A").getextrema()[0] == 0:
        colours = _visible_colours(rgba, palette)
        fixed = Image.new("P", (1, 1))
        fixed.putpalette(colours)
        reduced = rgb.quantize(palette=fixed, dither=Image.Dither.NONE)
    elif isinstance(palette, int):
        reduced = rgb.quantize(palette, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    else:
        chosen = PALETTES[palette] if isinstance(palette, str) else palette
        colours = [int(hex_[i : i + 2], 16) for hex_ in chosen for i in (0, 2, 4)]
        fixed = Image.new("P", (1, 1))
        fixed.putpalette(colours)
        reduced = rgb.quantize(palette=fixed, dither=Image.Dither.NONE)
    out = reduced.convert("RGB")
    out.putalpha(rgba.getchannel("A"))
    return out


def _visible_colours(rgba: PILImage, count: int) -> list[int]:
    """Up to `count` colours (R, G, B flattened) that median cut finds among the
    visible pixels of `rgba`, as it would among all of an opaque image's."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(rgba)
    shown = pixels[pixels[..., 3] > 0][:, :3]
    if not len(shown):
        return [0, 0, 0]
    strip = Image.fromarray(np.ascontiguousarray(shown.reshape(1, -1, 3)), "RGB")
    chosen = strip.quantize(count, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = chosen.getpalette() or []
    used = [index for index, share in enumerate(chosen.histogram()) if share]
    return [palette[3 * index + channel] for index in used for channel in range(3)]


def trim(image: PILImage) -> tuple[PILImage, str | None]:
    """Cropped to its visible pixels, with the box that says where they were; an image
    with nothing to crop (or nothing visible) is kept whole, without a box."""
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is None or box == (0, 0, *rgba.size):
        return rgba, None
    left, top, _, _ = box
    return rgba.crop(box), f"{left},{top},{rgba.width},{rgba.height}"


def pad(image: PILImage, pixels: int) -> PILImage:
    """`pixels` of transparency added on every side."""
    from PIL import Image

    rgba = image.convert("RGBA")
    out = Image.new("RGBA", (rgba.width + 2 * pixels, rgba.height + 2 * pixels), (0, 0, 0, 0))
    out.paste(rgba, (pixels, pixels))
    return out


def extrude(image: PILImage, pixels: int) -> PILImage:
    """The edge pixels repeated `pixels` times outward, so texture filtering at a
    frame's border in an atlas samples the sprite, not its neighbour."""
    import numpy as np
    from PIL import Image

    mode = "RGBA" if "A" in image.getbands() else "RGB"
    array = np.asarray(image.convert(mode))
    widened = np.pad(array, ((pixels, pixels), (pixels, pixels), (0, 0)), mode="edge")
    return Image.fromarray(widened, mode)
