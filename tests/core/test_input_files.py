"""Input files are checked before any work: an input that is not an image, or a mask
of another size than its image, is one line naming the file, the image and the key,
from `validate`, `plan` and `apply` alike."""

from __future__ import annotations

import io

import pytest

HEAD = """version = 1
[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-Fill-dev"
width = 512
height = 512
"""

CAP = (
    '[images.cap]\nprompt = "a red cap"\nimage = "in.png"\nmask = "mask.png"\noutput = "cap.png"\n'
)


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "PNG")
    return buffer.getvalue()


def assert_one_line_everywhere(run_cli, root, expected: str) -> None:
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (command, out, err)
        assert err.splitlines() == [f"error: {expected}"], (command, err)
    assert not (root / "cap.png").exists()  # nothing was generated


def test_an_input_that_is_not_an_image_names_the_file_image_and_key(project, run_cli):
    root = project(
        {"images.toml": HEAD + CAP, "in.png": b"hello, I am text", "mask.png": png(512, 512)}
    )
    assert_one_line_everywhere(
        run_cli,
        root,
        "images.toml:9:1: images.cap.image: in.png cannot be used: not a PNG, JPEG or "
        "WebP file (it starts with 'hello, I am text')",
    )


def test_an_input_in_another_format_is_named_by_its_format(project, run_cli):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (512, 512)).save(buffer, "GIF")
    root = project(
        {"images.toml": HEAD + CAP, "in.png": buffer.getvalue(), "mask.png": png(512, 512)}
    )
    assert_one_line_everywhere(
        run_cli,
        root,
        "images.toml:9:1: images.cap.image: in.png cannot be used: a GIF image, not a PNG, "
        "JPEG or WebP image",
    )


def test_a_truncated_image_is_refused_before_any_work(project, run_cli):
    root = project(
        {"images.toml": HEAD + CAP, "in.png": png(512, 512)[:40], "mask.png": png(512, 512)}
    )
    code, _, err = run_cli("validate")
    assert code == 1
    assert err.startswith("error: images.toml:9:1: images.cap.image: in.png cannot be used: ")
    assert "BytesIO" not in err and len(err.splitlines()) == 1
    assert run_cli("apply").code == 1 and not (root / "cap.png").exists()


def test_a_mask_of_another_size_than_its_image_is_refused(project, run_cli):
    root = project({"images.toml": HEAD + CAP, "in.png": png(512, 512), "mask.png": png(256, 256)})
    assert_one_line_everywhere(
        run_cli,
        root,
        "images.toml:10:1: images.cap.mask: mask.png is 256×256 but the image in.png is "
        "512×512: a mask must be the size of its image",
    )


def test_a_mask_is_checked_against_an_upstream_images_output(project, run_cli):
    base = (
        '[images.base]\nmodel = "black-forest-labs/FLUX.1-schnell"\nprompt = "a man"\n'
        'width = 256\nheight = 256\noutput = "base.png"\n'
    )
    cap = CAP.replace('"in.png"', '"@base"')
    root = project({"images.toml": HEAD + base + cap, "mask.png": png(512, 512)})
    assert_one_line_everywhere(
        run_cli,
        root,
        "images.toml:16:1: images.cap.mask: mask.png is 512×512 but the image @base's output "
        "base.png is 256×256: a mask must be the size of its image",
    )
    (root / "mask.png").write_bytes(png(256, 256))
    code, _, err = run_cli("apply")
    assert code == 0, err


SPRITE = (
    '[images.base]\nmodel = "black-forest-labs/FLUX.1-schnell"\nprompt = "a knight"\n'
    'resize = [64, 64]\nbackground = "transparent"\n{step}\noutput = "base.png"\n'
)


def test_a_mask_is_checked_against_a_padded_upstream_file(project, run_cli):
    """`pad = 4` writes a 72×72 file from a 64×64 image: the mask is checked against
    the file the inpainting model is sent, not the size before padding."""
    text = HEAD + SPRITE.format(step="pad = 4") + CAP.replace('"in.png"', '"@base"')
    root = project({"images.toml": text, "mask.png": png(64, 64)})
    assert_one_line_everywhere(
        run_cli,
        root,
        "images.toml:17:1: images.cap.mask: mask.png is 64×64 but the image @base's output "
        "base.png is 72×72: a mask must be the size of its image",
    )
    (root / "mask.png").write_bytes(png(72, 72))
    assert run_cli("validate").code == 0
    code, _, err = run_cli("apply")
    assert code == 0, err


def test_a_mask_for_a_trimmed_upstream_is_checked_before_it_is_sent(project, run_cli):
    """A trimmed file's size depends on its pixels: plan cannot check it, apply does,
    once the upstream is made and before the inpainting request is sent."""
    import json

    from PIL import Image

    text = HEAD + SPRITE.format(step="trim = true") + CAP.replace('"in.png"', '"@base"')
    root = project({"images.toml": text, "mask.png": png(64, 64)})
    assert run_cli("validate").code == 0
    code, out, err = run_cli("apply", "--json")
    assert code == 1
    with Image.open(root / "base.png") as image:
        trimmed = f"{image.width}×{image.height}"
    assert trimmed != "64×64"
    assert (
        "  cap: images.cap.mask: mask.png is 64×64 but the image @base's output base.png is "
        f"{trimmed}: a mask must be the size of its image; nothing was sent\n"
    ) in err
    assert json.loads(out)["generated"] == 1  # base alone: cap's request was never made
    assert not (root / "cap.png").exists()


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_inputs_of_every_format_a_model_takes_pass(fmt, project, run_cli):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (512, 512), "white").save(buffer, fmt)
    suffix = {"JPEG": ".jpg", "WEBP": ".webp", "PNG": ".png"}[fmt]
    text = HEAD + CAP.replace('"in.png"', f'"in{suffix}"')
    root = project(
        {"images.toml": text, f"in{suffix}": buffer.getvalue(), "mask.png": png(512, 512)}
    )
    code, _, err = run_cli("apply")
    assert code == 0, err
    assert (root / "cap.png").exists()


def png_with_broken_pixels(width: int, height: int) -> bytes:
    """A PNG whose header and chunk CRCs are right but whose pixel data does not inflate."""
    import struct
    import zlib

    data = png(width, height)
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    garbage = b"\x78\x9c" + b"\xff" * (length - 2)
    chunk = b"IDAT" + garbage
    broken = struct.pack(">I", len(garbage)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:start] + broken + data[start + 12 + length :]


def test_an_input_whose_pixels_do_not_decode_names_the_image_and_key(project, run_cli):
    root = project(
        {
            "images.toml": HEAD + CAP,
            "in.png": png_with_broken_pixels(512, 512),
            "mask.png": png(512, 512),
        }
    )
    code, _, err = run_cli("apply")
    assert code == 1
    assert "  cap: the image input is a PNG that does not decode (" in err
    assert "BytesIO" not in err and "Traceback" not in err
    assert not (root / "cap.png").exists()
