"""Encode a backend's original bytes into the file an image declares.

Pillow is imported inside the functions: `plan` never decodes an image.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nebula_build.core.sprite import ALPHA_FLOOR_STEP
from nebula_build.imaging import MAX_PIXELS, image_size, sniff
from nebula_build.outputs import checks as acceptance
from nebula_build.outputs.keying import Keying, apply_key
from nebula_build.outputs.metadata import png_with_text, records_for, save_options
from nebula_build.outputs.sprites import TRIM_KEY, after_resize, before_resize, clear_halo

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from nebula_build.core.spec import AssetSpec

_PIL_NAMES = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "avif": "AVIF"}
_DEFAULT_QUALITY = {"jpeg": 90, "webp": 90, "avif": 75}


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one image becomes its files (the spec's output options)."""

    format: str
    size: tuple[int, int]
    fit: str = "cover"
    resample: str = "lanczos"
    quality: int | None = None
    lossless: bool | None = None
    variants: tuple[tuple[str, int, int], ...] = ()
    #: metadata records to embed; empty means strip all metadata
    texts: tuple[tuple[str, str], ...] = ()
    #: how a transparent background is made from a key colour, if it is
    keying: Keying | None = None
    #: the sprite cleanup steps, (name, value) pairs (`outputs/sprites.py`)
    steps: tuple[tuple[str, Any], ...] = ()
    #: acceptance checks on the main file, (name, limit) pairs (`outputs/checks.py`)
    checks: tuple[tuple[str, Any], ...] = ()
    #: the colours (RRGGBB) of a palette file, read by the engine from the project
    palette: tuple[str, ...] = ()

    @property
    def passthrough(self) -> bool:
        """The original bytes can be kept: no option needs the pixels re-encoded. PNG
        metadata is rewritten at the byte level; other formats need an encoder for it."""
        if self.quality is not None or self.lossless:
            return False
        if self.keying is not None or self.steps or self.checks:
            return False
        return self.format == "png"


def encoding_for(
    spec: AssetSpec, *, seed: int | None = None, made_with: Mapping[str, str] | None = None
) -> Encoding:
    """How `spec`'s output options turn its original into files; `seed` and `made_with`
    are the generation's provenance, embedded with the spec (`records_for`)."""
    steps = spec.steps
    steps.pop("palette_digest", None)  # the file's colours come with `palette`
    keying = None
    if spec.key_color is not None:
        keying = Keying(spec.key_color, steps.pop("key_softness"), steps.pop("despill"))
    return Encoding(
        spec.format,
        spec.delivered_size,
        spec.fit,
        spec.resample,
        spec.quality,
        spec.lossless,
        spec.variants,
        records_for(spec, seed=seed, made_with=made_with),
        keying,
        tuple(sorted(steps.items())),
        spec.checks,
    )


def keeps_original(encoding: Encoding, fmt: str, size: tuple[int, int]) -> bool:
    """Whether the main file is the original's bytes (metadata rewritten at the byte
    level): it already has the format and size asked for and no option re-encodes it."""
    return encoding.passthrough and fmt == encoding.format and size == encoding.size


def needs_pixels(encoding: Encoding, fmt: str, size: tuple[int, int]) -> bool:
    """Whether `render` decodes an original of this format and size: it does unless the
    main file keeps the original and there are no variants."""
    return bool(encoding.variants) or not keeps_original(encoding, fmt, size)


def render(original: bytes, encoding: Encoding, *, pixels: PILImage | None = None) -> list[bytes]:
    """The main file, then each variant; see `render_checked`."""
    return render_checked(original, encoding, pixels=pixels)[0]


def render_checked(
    original: bytes, encoding: Encoding, *, pixels: PILImage | None = None
) -> tuple[list[bytes], dict[str, Any]]:
    """The main file, then each variant, and each acceptance check's measured value.
    The original bytes are written as they are when they already have the format and
    size asked for (no re-encode, no loss).

    `pixels` is the original already decoded (verification decodes it once when
    `needs_pixels` says so); it is read, never changed. Without it, the original is
    decoded here if needed. Raises OutputRejectedError when a transparency cannot be
    made or a check fails."""
    size = pixels.size if pixels is not None else image_size(original)
    main_as_is = keeps_original(encoding, sniff(original) or "", size)
    if main_as_is:
        kept = png_with_text(original, dict(encoding.texts))  # metadata without re-encoding
        if not encoding.variants:
            return [kept], {}
    image = pixels if pixels is not None else _decode(original)
    steps = dict(encoding.steps)
    if encoding.keying is not None:
        image = apply_key(image, encoding.keying)
    image = before_resize(image, steps)
    method = _METHODS[encoding.resample]
    if image.size != encoding.size:
        image = _fit(image, encoding, method)
    image, trim_box = after_resize(image, steps, encoding.palette)
    texts = encoding.texts + (((TRIM_KEY, trim_box),) if trim_box else ())
    main = kept if main_as_is else _save(image, encoding, texts)
    values = {}
    if encoding.checks:  # measured on the delivered file: a lossy encoder adds colours
        values = acceptance.run(dict(encoding.checks), main, _decode(main))
    files = [main]
    floor = steps.get(ALPHA_FLOOR_STEP)
    for _, width, height in encoding.variants:
        variant = image.resize((width, height), method)
        files.append(
            _save(clear_halo(variant, floor) if floor else variant, encoding, encoding.texts)
        )
    return files, values


def _decode(original: bytes) -> PILImage:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(original)) as opened:
        return opened.copy()


_METHODS = {"lanczos": 1, "nearest": 0}  # PIL.Image.Resampling values, without importing PIL


def _fit(image: PILImage, encoding: Encoding, method: int) -> PILImage:
    from PIL import ImageOps

    if encoding.fit == "exact":
        return image.resize(encoding.size, method)
    if encoding.fit == "contain":
        if encoding.format != "jpeg" and image.mode != "RGBA":
            image = image.convert("RGBA")  # pad with transparency where the format has it
        return ImageOps.pad(image, encoding.size, method, color=None)
    return ImageOps.fit(image, encoding.size, method)


def _save(image: PILImage, encoding: Encoding, texts: tuple[tuple[str, str], ...]) -> bytes:
    fmt = encoding.format
    if fmt == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    options: dict[str, object] = {}
    if fmt in _DEFAULT_QUALITY:
        options["quality"] = encoding.quality or _DEFAULT_QUALITY[fmt]
    if encoding.lossless:
        options["lossless"] = True
    if texts and fmt != "png":
        options |= save_options(dict(texts))
    buffer = io.BytesIO()
    image.save(buffer, _PIL_NAMES[fmt], **options)
    data = buffer.getvalue()
    return png_with_text(data, dict(texts)) if fmt == "png" else data
