"""An input file the guard refuses (a FIFO, a link out of the project) is said at the
image and key that read it, as a missing one is, by plan and apply alike."""

from __future__ import annotations

import os

MANIFEST = """\
version = 1

[defaults]
backend = "preview"
model = "black-forest-labs/FLUX.1-Fill-dev"
width = 64
height = 64

[images.b]
prompt = "a red cap {colour}"
image = "base.png"
mask = "mask.png"
output = "b-{colour}.png"
matrix = { colour = ["red", "blue"] }

[images.p]
model = "black-forest-labs/FLUX.1-schnell"
prompt = "a tiny fox"
palette = "fox.hex"
output = "p.png"
"""


def test_a_fifo_or_a_link_out_as_an_input_names_the_image_and_key(project, run_cli, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not for the plan")
    root = project({"images.toml": MANIFEST})
    os.mkfifo(root / "mask.png")
    os.mkfifo(root / "fox.hex")
    (root / "base.png").symlink_to(outside)
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (out, err)
        assert err == (
            "error: images.toml:11:1: images.b.image: 'base.png' leaves the project through "
            "a symbolic link (for 2 of its images)\n"
            "error: images.toml:12:1: images.b.mask: 'mask.png' is not a regular file "
            "(for 2 of its images)\n"
            "error: images.toml:19:1: images.p.palette: 'fox.hex' is not a regular file\n"
        ), command
    assert not (root / "b-red.png").exists()


def test_an_input_over_the_size_limit_names_the_image_and_key(project, run_cli, monkeypatch):
    """plan and validate too, where only apply read the input to its limit: plan's
    digest streams, and the header's read that refused it named no image or key."""
    monkeypatch.setattr("nebula_build.engine.prepare.MAX_INPUT_BYTES", 64)
    monkeypatch.setattr("nebula_build.state.inputs.MAX_INPUT_BYTES", 64)
    files = {"images.toml": MANIFEST, "base.png": b"x" * 65, "mask.png": b"x" * 65}
    root = project(files | {"fox.hex": b"; " + b"x" * 63})
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command)
        assert code == 1, (out, err)
        assert err == (
            "error: images.toml:11:1: images.b.image: 'base.png' is 65 bytes, over the 64 bytes "
            "an input may have (for 2 of its images)\n"
            "error: images.toml:12:1: images.b.mask: 'mask.png' is 65 bytes, over the 64 bytes "
            "an input may have (for 2 of its images)\n"
            "error: images.toml:19:1: images.p.palette: 'fox.hex' is 65 bytes, over the 64 bytes "
            "an input may have\n"
        ), command
    assert not (root / "p.png").exists()
