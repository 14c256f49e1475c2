"""Keying on images the tests draw: the alpha against the known mask, halo pixels,
and the originals refused (checkerboard, no key background, too little background)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from nebula_build.core.sprite import choose_key
from nebula_build.errors import OutputRejectedError
from nebula_build.outputs.keying import Keying, apply_key

MAGENTA = (255, 0, 255)
SUBJECT = (40, 160, 90)
SIZE = 96
SCALE = 8


def drawn_sprite(
    background: tuple[int, int, int] = MAGENTA, box: float = 0.25
) -> tuple[Image.Image, np.ndarray]:
    """A green disc on `background` with anti-aliased edges, and its true coverage
    (the alpha a perfect keyer would find), both from one drawing at 8× the size."""
    big = SIZE * SCALE
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).ellipse((big * box, big * box, big * (1 - box), big * (1 - box)), 255)
    coverage = mask.resize((SIZE, SIZE), Image.Resampling.BOX)
    subject = Image.new("RGB", (SIZE, SIZE), SUBJECT)
    image = Image.composite(subject, Image.new("RGB", (SIZE, SIZE), background), coverage)
    return image, np.asarray(coverage, dtype=np.float32) / 255


def halo_pixels(rgba: Image.Image) -> int:
    """Visible pixels whose colour is nearer the key than the subject: a fringe."""
    pixels = np.asarray(rgba, dtype=np.float32)
    visible = pixels[..., 3] > 0
    to_key = np.abs(pixels[..., :3] - MAGENTA).sum(axis=2)
    to_subject = np.abs(pixels[..., :3] - SUBJECT).sum(axis=2)
    return int((visible & (to_key < to_subject)).sum())


def test_soft_edges_match_the_known_mask_and_despill_leaves_no_halo():
    image, truth = drawn_sprite()
    keyed = apply_key(image, Keying("#FF00FF"))
    alpha = np.asarray(keyed.getchannel("A"), dtype=np.float32) / 255
    edge = (truth > 0) & (truth < 1)
    assert edge.sum() > 100  # the drawing has a real soft edge to measure
    assert np.abs(alpha - truth).mean() < 0.01
    assert np.abs(alpha - truth)[edge].mean() < 0.08
    assert ((alpha > 0) & (alpha < 1)).sum() > 0.5 * edge.sum()  # soft, not cut out
    assert halo_pixels(keyed) == 0
    undespilled = apply_key(image, Keying("#FF00FF", despill=False))
    assert halo_pixels(undespilled) > 20


def test_less_softness_makes_a_harder_edge():
    image, _ = drawn_sprite()

    def partial(softness: float) -> int:
        alpha = np.asarray(apply_key(image, Keying("#FF00FF", softness)).getchannel("A"))
        return int(((alpha > 0) & (alpha < 255)).sum())

    assert partial(0.01) < partial(0.25) / 4
    assert partial(0.25) <= partial(1.0)


def test_a_checkerboard_painted_as_transparency_is_refused():
    image, _ = drawn_sprite()
    board = Image.new("RGB", (SIZE, SIZE))
    squares = ImageDraw.Draw(board)
    for y in range(0, SIZE, 8):
        for x in range(0, SIZE, 8):
            shade = (255, 255, 255) if (x + y) // 8 % 2 else (204, 204, 204)
            squares.rectangle((x, y, x + 7, y + 7), fill=shade)
    _, truth = drawn_sprite()
    fake = Image.composite(
        Image.new("RGB", image.size, SUBJECT),
        board,
        Image.fromarray((truth * 255).astype(np.uint8)),
    )
    with pytest.raises(OutputRejectedError, match=r'checkerboard.*key = "#00FF00"'):
        apply_key(fake, Keying("#FF00FF"))


def test_a_background_that_is_not_the_key_is_refused_with_its_share():
    image, _ = drawn_sprite(background=(250, 250, 250))
    with pytest.raises(OutputRejectedError, match=r"#FF00FF is not the background: it is 0% of"):
        apply_key(image, Keying("#FF00FF"))


def test_a_subject_that_leaves_too_little_background_is_refused():
    image = Image.new("RGB", (SIZE, SIZE), MAGENTA)
    ImageDraw.Draw(image).rectangle((1, 1, SIZE - 2, SIZE - 2), fill=SUBJECT)
    with pytest.raises(OutputRejectedError, match="too little becomes transparent"):
        apply_key(image, Keying("#FF00FF"))


def test_a_subject_in_the_key_colour_gets_another_key():
    assert choose_key("a knight with a pink plume") == "#00FF00"
    assert choose_key("a pink slime") == "#0000FF"
    assert choose_key("a knight") == "#FF00FF"
    # keyed on a colour it does not use, a magenta subject keeps every pixel
    image, truth = drawn_sprite(background=(0, 255, 0))
    pixels = np.asarray(image).copy()
    pixels[truth >= 1] = MAGENTA
    keyed = apply_key(Image.fromarray(pixels), Keying("#00FF00"))
    alpha = np.asarray(keyed.getchannel("A"))
    assert (alpha[truth >= 1] == 255).all()


def test_alpha_the_backend_returned_is_kept():
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, 70, 70), fill=(200, 10, 10, 255))
    kept = apply_key(image, Keying("#FF00FF"))
    assert kept.tobytes() == image.tobytes()
