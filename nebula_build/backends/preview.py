"""The `preview` backend: offline, free, deterministic stand-ins.

Each image has exactly the requested size and shows its name, prompt, model,
seed and size over a palette derived from the generation key: the same key
always gives the same bytes. Inpainting previews paint the masked area of the
input image; a sprite's stand-in is a shape on the key colour, labelled inside.
For layout work, tests, CI without credits, and first runs.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import textwrap
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import Field

from nebula_build.imaging import ImageError, decode
from nebula_build.plugin import (
    Backend,
    BackendSettings,
    GenerationRequest,
    GenerationResult,
    ModelSupport,
    RequestRejectedError,
    hookimpl,
    nebula_models,
)

if TYPE_CHECKING:
    from PIL import Image as PILImage
    from PIL.ImageFont import FreeTypeFont


def _palette(key: str) -> list[tuple[int, int, int]]:
    seed = hashlib.sha256(key.encode()).digest()
    base = seed[0] / 255
    colors = []
    for index, (shift, sat, val) in enumerate(
        ((0.0, 0.55, 0.35), (0.12, 0.65, 0.75), (0.5, 0.5, 0.95), (0.3, 0.7, 0.6))
    ):
        hue = (base + shift + seed[index + 1] / 2550) % 1.0
        red, green, blue = colorsys.hsv_to_rgb(hue, sat, val)
        colors.append((int(red * 255), int(green * 255), int(blue * 255)))
    return colors


def _background(key: str, size: tuple[int, int]) -> PILImage.Image:
    from PIL import Image, ImageDraw, ImageFilter

    dark, mid, light, accent = _palette(key)
    corners = Image.new("RGB", (2, 2))
    corners.putdata([dark, mid, mid, dark if key[-1] in "01234567" else light])
    image = corners.resize(
        size, Image.Resampling.BICUBIC, reducing_gap=None, box=(0.5, 0.5, 1.5, 1.5)
    )
    # Soft shapes drawn small, blurred and scaled up: cheap at any size.
    small = (max(8, size[0] // 8), max(8, size[1] // 8))
    layer = Image.new("RGBA", small, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    digest = hashlib.sha256(("shapes" + key).encode()).digest()
    for index in range(5):
        cx, cy = digest[index * 3] / 255 * small[0], digest[index * 3 + 1] / 255 * small[1]
        radius = (0.15 + digest[index * 3 + 2] / 255 * 0.35) * min(small)
        color = (light if index % 2 else accent) + (90,)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=color)
    layer = layer.filter(ImageFilter.GaussianBlur(max(1, min(small) // 12)))
    image.paste(
        layer.resize(size, Image.Resampling.BILINEAR),
        (0, 0),
        layer.resize(size, Image.Resampling.BILINEAR),
    )
    return image


def _fit(data: bytes, size: tuple[int, int], mode: str, key: str) -> PILImage.Image:
    """An input (`key`: image or mask) at `size`; one that does not decode (its header
    was checked before any work, its pixels only here) is refused by name."""
    from PIL import Image, ImageOps

    try:
        opened = decode(data)
    except ImageError as exc:
        raise RequestRejectedError(f"the {key} input is {exc}", backend="preview") from None
    with opened:
        return ImageOps.fit(opened.convert(mode), size, Image.Resampling.LANCZOS)


def _inpainting(request: GenerationRequest, size: tuple[int, int]) -> tuple[PILImage.Image, bool]:
    """The input image with a visible fill over the mask's white area, and whether the
    mask lies mostly in the top half (so the caption goes to the bottom)."""
    from PIL import Image, ImageDraw

    assert request.image is not None and request.mask is not None
    base = _fit(request.image, size, "RGB", "image")
    mask = _fit(request.mask, size, "L", "mask")
    _, _, light, accent = _palette(request.generation_key)
    fill = Image.new("RGB", size, accent)
    stripes = ImageDraw.Draw(fill)
    step = max(6, min(size) // 24)
    for offset in range(-size[1], size[0], step * 2):
        stripes.line((offset, size[1], offset + size[1], 0), fill=light, width=step)
    box = mask.getbbox()
    mask_on_top = box is not None and (box[1] + box[3]) / 2 < size[1] / 2
    return Image.composite(Image.blend(base, fill, 0.75), base, mask), mask_on_top


def _on_key(request: GenerationRequest, background: str, size: tuple[int, int]) -> PILImage.Image:
    """A sprite stand-in: the preview's palette in a rounded shape with anti-aliased
    edges, on the flat key colour the request asks for (as a model told to would). The
    caption stays inside the shape, so the key colour around it keys out as before."""
    from PIL import Image, ImageDraw

    scale = 4  # drawn large and reduced: soft edges, like a model's
    mask = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    width, height = mask.size
    radius = min(width, height) * 0.22
    ImageDraw.Draw(mask).rounded_rectangle(
        (width * 0.18, height * 0.12, width * 0.82, height * 0.88), radius=radius, fill=255
    )
    mask = mask.resize(size, Image.Resampling.BOX)
    canvas = Image.new("RGB", size, _rgb(background))
    canvas.paste(_background(request.generation_key, size), (0, 0), mask)
    # The rectangle inside the rounded one (its corners on the arcs), and a pixel more.
    inset = radius / scale * (1 - 0.5**0.5) + 1
    box = (
        round(size[0] * 0.18 + inset),
        round(size[1] * 0.12 + inset),
        round(size[0] * 0.82 - inset),
        round(size[1] * 0.88 - inset),
    )
    _badge(canvas, request.image_name, box)
    _caption(canvas, request, top=False, box=box, within=mask)
    return canvas


def badge_text(name: str) -> str:
    """A few characters that tell a sprite from the others of its set once it is
    delivered at sprite size, where no caption can be read: its matrix values, a
    number whole and a word by its first letter (`hero[run,10]`: "R10",
    `enemy[slime,idle]`: "SI"), or the first letters of its name ("PO")."""
    inside = name.partition("[")[2].rstrip("]")
    if not inside:
        return _drawable(name[:2]).upper()
    parts = [part.strip() for part in inside.split(",")]
    text = "".join(part if part.isdigit() else part[:1].upper() for part in parts if part)
    return _drawable(text[:4]) or "?"


def _badge(image: PILImage.Image, name: str, box: tuple[int, int, int, int]) -> None:
    """`badge_text` large in the upper part of `box`, light on a dark outline: still a
    few pixels tall at 32 x 32."""
    from PIL import ImageDraw

    left, upper, right, lower = box
    text = badge_text(name)
    width, height = right - left, lower - upper
    size = max(6, int(min(height * 0.42, width * 0.85 / (0.62 * len(text)))))
    font = _font(size)
    stroke = max(1, size // 10)
    centre = ((left + right) / 2, upper + (lower - upper) * 0.32)
    ImageDraw.Draw(image).text(
        centre,
        text,
        font=font,
        anchor="mm",
        fill=(255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(12, 14, 24),
    )


def _rgb(hex_: str) -> tuple[int, int, int]:
    value = int(hex_.lstrip("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def _font(size: int) -> FreeTypeFont:
    from PIL import ImageFont

    font = ImageFont.load_default(size=max(6, size))
    assert isinstance(font, ImageFont.FreeTypeFont), "Pillow was built without FreeType"
    return font


@functools.lru_cache(maxsize=4096)
def _has_glyph(char: str) -> bool:
    """Whether the default font draws `char` as itself rather than as its empty
    box (it holds little more than ASCII)."""
    font = _font(20)
    return char.isspace() or bytes(font.getmask(char)) != bytes(font.getmask(_NO_GLYPH))


_NO_GLYPH = "\U0010fffd"  # a private-use character no font draws


def _drawable(text: str) -> str:
    """`text` in characters the font has: an accented letter as its base letter
    (Café as Cafe), anything else it lacks as `?`, never as empty boxes."""
    return "".join(char if _has_glyph(char) else _base_letters(char) for char in text)


def _base_letters(char: str) -> str:
    if char in _SPELLED:
        return _SPELLED[char]
    return "".join(part for part in unicodedata.normalize("NFKD", char) if _has_glyph(part)) or "?"


#: letters and marks with no base letter to fall back on, as they are spelled in ASCII
_SPELLED = {
    "—": "-",
    "–": "-",
    "ß": "ss",
    "æ": "ae",
    "Æ": "AE",
    "ø": "o",
    "Ø": "O",
    "œ": "oe",
    "Œ": "OE",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "€": "EUR",
    "£": "GBP",
}


def _wrap(text: str, font: FreeTypeFont, width: float, max_lines: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = textwrap.shorten(lines[-1] + " …", width=len(lines[-1]), placeholder=" …")
    return lines


def _caption(
    image: PILImage.Image,
    request: GenerationRequest,
    *,
    top: bool,
    box: tuple[int, int, int, int] | None = None,
    within: PILImage.Image | None = None,
) -> None:
    """The name, prompt and details on a panel inside `box` (the whole image unless
    given), drawn only where `within` (a mask) is; over an input image (a chain's
    upstream preview, which carries its own caption) the panel is opaque so no text
    shows through."""
    from PIL import Image, ImageChops, ImageDraw

    left, upper, right, lower = box or (0, 0, *image.size)
    width, height = right - left, lower - upper
    unit = min(width, height)
    if unit < 96:  # too small for legible text: the palette alone identifies it
        return
    margin = unit // 16
    title_size, body_size = max(10, unit // 12), max(8, unit // 26)
    max_lines = max(1, (height // 3) // (body_size + body_size // 3))
    prompt = _wrap(_drawable(request.prompt), _font(body_size), width - 4 * margin, max_lines)
    details = [request.model.split("/")[-1], "{} x {}".format(*image.size)]
    if request.seed is not None:
        details.append(f"seed {request.seed}")
    lines = [(_drawable(request.image_name), title_size, (255, 255, 255))]
    lines += [(text, body_size, (235, 235, 240)) for text in prompt]
    lines += [("  ·  ".join(details), max(7, body_size * 4 // 5), (200, 205, 215))]
    panel_height = sum(size + size // 3 for _, size, _ in lines) + margin
    panel_top = upper + (margin if top else height - panel_height - margin)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rounded_rectangle(
        (left + margin, panel_top, right - margin, panel_top + panel_height),
        radius=margin // 2,
        fill=(10, 12, 20, 255 if request.image is not None else 165),
    )
    y = panel_top + margin // 2
    for text, size, color in lines:
        draw.text((left + 2 * margin, y), text, font=_font(size), fill=(*color, 255))
        y += size + size // 3
    alpha = overlay.getchannel("A")
    image.paste(overlay, (0, 0), alpha if within is None else ImageChops.darker(alpha, within))


def render(request: GenerationRequest) -> bytes:
    """The preview PNG for `request`; same request, same bytes."""
    size = (request.width, request.height)
    if request.image is not None and request.mask is not None:
        image, mask_on_top = _inpainting(request, size)
        _caption(image, request, top=not mask_on_top)
    elif request.background is not None:
        image = _on_key(request, request.background, size)
    else:
        image = _background(request.generation_key, size)
        _caption(image, request, top=False)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class PreviewSettings(BackendSettings):
    """`[backends.preview]`: the common settings, with finite bounds."""

    timeout: float = Field(
        120.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds before one generation gives up.",
    )


class PreviewBackend(Backend):
    """Offline stand-ins that take the parameters the hosted models take, and a seed
    on every model."""

    name = "preview"
    settings_model = PreviewSettings

    @classmethod
    def models(cls, settings: BackendSettings) -> Mapping[str, ModelSupport]:
        # Mirror the Nebula catalog so a manifest validates the same way on both, but
        # honour the seed on every model: previews are deterministic anyway.
        return {
            mid: ModelSupport(m.id, m.params | {"seed"}, m.size_multiple, m.label)
            for mid, m in nebula_models().items()
        }

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        import asyncio  # not at module level: plugin loading must stay cheap for `plan`

        data = await asyncio.to_thread(render, request)
        return GenerationResult(data, seed=request.seed)


@hookimpl
def nebula_build_register_backends() -> list[type[Backend]]:
    return [PreviewBackend]
