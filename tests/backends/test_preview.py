"""The preview backend: deterministic, exact size, inpainting paints the mask."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from nebula_build.backends.preview import render
from nebula_build.plugin import GenerationRequest


def request(**changes) -> GenerationRequest:
    fields = {
        "image_name": "hero",
        "generation_key": "k" * 64,
        "model": "black-forest-labs/FLUX.1-schnell",
        "prompt": "a cat",
        "width": 320,
        "height": 192,
        "seed": 42,
    }
    return GenerationRequest(**(fields | changes))


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def test_same_request_same_bytes_and_exact_size():
    first, second = render(request()), render(request())
    assert first == second
    assert decode(first).size == (320, 192)
    assert decode(render(request(width=64, height=2048))).size == (64, 2048)


def test_different_keys_look_different():
    a = decode(render(request(generation_key="a" * 64)))
    b = decode(render(request(generation_key="b" * 64)))
    assert ImageChops.difference(a, b).getbbox() is not None


@pytest.mark.parametrize(
    ("written", "drawn"),
    [
        ("Café crème à Paris, Ünïcödé", "Cafe creme a Paris, Unicode"),
        ("東京の夜 🚀 at night", "???? ? at night"),
        ("Straße — Ærøskøbing – €5", "Strasse - AEroskobing - EUR5"),
    ],
)
def test_letters_the_font_lacks_are_drawn_as_text_never_as_empty_boxes(written, drawn):
    caption = {"width": 640, "height": 320}
    assert render(request(prompt=written, **caption)) == render(request(prompt=drawn, **caption))
    named = render(request(image_name="cover[café]", **caption))
    assert named == render(request(image_name="cover[cafe]", **caption))


def test_inpainting_paints_only_the_masked_area():
    base = Image.new("RGB", (256, 256), (40, 120, 200))
    mask = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(mask).rectangle((150, 150, 250, 250), fill=255)
    encoded = []
    for image in (base, mask):
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    out = decode(
        render(
            request(
                model="black-forest-labs/FLUX.1-Fill-dev",
                width=256,
                height=256,
                image=encoded[0],
                mask=encoded[1],
            )
        )
    )
    assert out.getpixel((200, 200)) != (40, 120, 200)  # repainted
    assert out.getpixel((120, 230)) == (40, 120, 200)  # untouched, away from the caption


def test_a_sprite_stand_in_is_labelled_inside_its_shape_and_keys_out_the_same():
    """A `background = "transparent"` stand-in shows its name and prompt like any
    preview, on the shape only: the key colour around it is untouched, so the keying
    (and the frames of an atlas) come out as without the label."""
    from nebula_build.outputs.keying import Keying, apply_key

    def sprite(name: str, prompt: str) -> Image.Image:
        changes = {"width": 256, "height": 256, "background": "#FF00FF"}
        return decode(render(request(image_name=name, prompt=prompt, **changes)))

    slime, bat = sprite("enemy[slime,idle]", "a slime"), sprite("enemy[bat,idle]", "a bat")
    label = ImageChops.difference(slime, bat).getbbox()
    assert label is not None  # the same key, so the same palette: only the text differs
    left, upper, right, lower = label
    assert left > 256 * 0.18 and right < 256 * 0.82 and upper > 256 * 0.12 and lower < 256 * 0.88
    border = [slime.getpixel((x, y)) for x in range(256) for y in (0, 255)]
    assert set(border) == {(255, 0, 255)}
    alphas = [apply_key(image, Keying("#FF00FF")).getchannel("A") for image in (slime, bat)]
    assert ImageChops.difference(*alphas).getbbox() is None
    inside = alphas[0].crop(label).getextrema()
    assert inside == (255, 255)  # the text and its panel stay opaque


def test_png_size_is_read_from_its_header():
    from nebula_build.imaging import image_size

    data = render(request(width=200, height=136))
    assert image_size(data) == (200, 136) == decode(data).size


CHAIN = """
    version = 1
    [defaults]
    backend = "preview"
    model = "black-forest-labs/FLUX.1-schnell"
    width = 256
    height = 256
    [images.enemy]
    prompt = "{prompt}"
    seed = 100
    output = "enemy.png"
    [images.enemy-hat]
    model = "black-forest-labs/FLUX.1-Fill-dev"
    prompt = "a tiny crown"
    image = "@enemy"
    mask = "crown.png"
    output = "enemy-hat.png"
"""


def test_chained_caption_hides_the_upstream_caption(project, run_cli):
    """The caption panel of an image-to-image preview is opaque: the upstream preview's
    own caption (its name, prompt, seed) does not show through it."""
    mask = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(mask).rectangle((60, 10, 200, 90), fill=255)  # on top: caption below
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    root = project(
        {"images.toml": CHAIN.format(prompt="a slime monster"), "crown.png": buffer.getvalue()}
    )
    panels = []
    for prompt in ("a slime monster", "a bat with a very long upstream prompt"):
        (root / "images.toml").write_text(CHAIN.format(prompt=prompt), encoding="utf-8")
        assert run_cli("apply").code == 0
        panels.append(caption_panel(root / "enemy-hat.png"))
    # Same name, prompt and model on an opaque panel: identical, whatever lies beneath.
    assert ImageChops.difference(*panels).getbbox() is None


def caption_panel(path: Path) -> Image.Image:
    """The inside of the bottom caption panel of a 256 x 256 preview, corners left out."""
    with Image.open(path) as image:
        return image.convert("RGB").crop((32, 256 - 16 - 56, 256 - 32, 256 - 16 - 6))


@pytest.mark.parametrize(
    ("name", "badge"),
    [
        ("enemy[slime,idle]", "SI"),
        ("hero[run,10]", "R10"),
        ("tile[12]", "12"),
        ("potion", "PO"),
        ("item[épée]", "E"),
    ],
)
def test_a_sprite_stand_in_carries_a_badge_it_is_told_apart_by_at_sprite_size(name, badge):
    """Delivered at 32 x 32 no caption can be read: a frame's matrix values, large,
    tell frame 10 from frame 1 and a slime from a bat."""
    from nebula_build.backends.preview import badge_text

    assert badge_text(name) == badge
