"""Where the plan says a note many images share: after its lines, before the summary."""

from __future__ import annotations

FLUX = 'model = "black-forest-labs/FLUX.1-schnell"\n'
MANIFEST = f"""\
version = 1

[defaults]
backend = "preview"
model = "stabilityai/stable-diffusion-xl-base-1.0"
negative_prompt = "blurry"
width = 64
height = 64

[images.a1]
prompt = "a"
output = "o/a1.png"

[images.f1]
{FLUX}prompt = "f one"
output = "o/f1.png"

[images.f2]
{FLUX}prompt = "f two"
output = "o/f2.png"

[images.f3]
{FLUX}prompt = "f three"
output = "o/f3.png"

[atlases.all]
images = ["a1", "f1", "f2", "f3"]
output = "o/all.png"
"""


def test_a_note_for_several_images_comes_after_the_plan_and_before_its_summary(project, run_cli):
    """Before, it sat between the last image and the atlases, detached from both."""
    project({"images.toml": MANIFEST})
    code, out, err = run_cli("plan")
    assert code == 0, err
    lines = out.splitlines()
    note = next(i for i, line in enumerate(lines) if line.startswith("  note for 3 images"))
    assert "FLUX.1-schnell does not take negative_prompt" in lines[note]
    assert lines[note - 3 : note] == ["  + atlas all  build  o/all.png", "      new atlas", ""]
    assert lines[note + 1] == "" and lines[note + 2].startswith("Plan: "), out
