"""One definition of the generation parameters: every place that names them follows it."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re

import pytest
from PIL import Image

from nebula_build.core.manifest import GenerationFields
from nebula_build.core.spec import AssetSpec
from nebula_build.params import PARAMS, Param
from nebula_build.plugin import FLUX_FILL, FLUX_SCHNELL, SDXL, GenerationRequest, nebula_models
from nebula_build.state.lockfile import loads
from tests.conftest import nebula_manifest


def test_the_typed_classes_follow_the_table():
    names = {param.name for param in PARAMS}
    assert set(GenerationFields.model_fields) == names | {"backend", "model"}
    spec_fields = {field.name for field in dataclasses.fields(AssetSpec)}
    assert {param.key_field for param in PARAMS} <= spec_fields
    assert names <= {field.name for field in dataclasses.fields(GenerationRequest)}
    for param in PARAMS:
        field = GenerationFields.model_fields[param.name]
        assert field.description == param.description


def test_a_model_takes_every_universal_parameter_and_only_the_optional_ones_it_declares():
    sdxl = nebula_models()[SDXL]
    assert all(sdxl.takes(param.name) for param in PARAMS if param.universal)
    assert not sdxl.takes("seed") and sdxl.takes("negative_prompt")
    assert nebula_models()[FLUX_FILL].inpainting and not sdxl.inpainting


def png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


#: for each optional parameter: a model that takes it, two values, and what the
#: embedded A1111 record shows for the first
CASES = {
    "negative_prompt": (SDXL, "text", "blurry", "Negative prompt: text"),
    "num_steps": (SDXL, 20, 30, "Steps: 20"),
    "guidance_scale": (SDXL, 7.5, 9.0, "CFG scale: 7.5"),
    "seed": (FLUX_SCHNELL, 1234, 99, "Seed: 1234"),
    "image": (FLUX_FILL, "a.png", "b.png", None),
    "mask": (FLUX_FILL, "m.png", "n.png", None),
}


@pytest.mark.parametrize("param", [p for p in PARAMS if not p.universal], ids=lambda p: p.name)
def test_each_parameter_reaches_the_request_the_key_the_lock_and_the_file(
    param: Param, project, run_cli, nebula_server
):
    assert set(CASES) == {p.name for p in PARAMS if not p.universal}, "a new parameter: add it"
    model, first, second, record = CASES[param.name]
    files = {"a.png": png((10, 20, 30)), "b.png": png((200, 0, 0))}
    files |= {"m.png": png((255, 255, 255)), "n.png": png((0, 0, 0))}
    image = {"model": model, "prompt": "a cap", "output": "out.png", param.name: first}
    if model == FLUX_FILL:
        image = {"image": "a.png", "mask": "m.png"} | image
    root = project({**files, "images.toml": nebula_manifest({"x": image})})

    code, _, err = run_cli("apply")
    assert code == 0, err
    body = nebula_server.requests[-1].body
    expected = base64.b64encode(files[first]).decode() if param.file else first
    assert body[param.name] == expected  # the request, as the API documents it
    lock = loads((root / "images.lock").read_text())["x"]
    assert param.name in lock.params  # the lock, once (a file by its digest)
    text = (root / "images.lock").read_text()
    # as a whole value: a digest may hold the same digits
    assert len(re.findall(rf"(?<![\w.]){re.escape(json.dumps(first))}(?![\w.])", text)) <= 1
    if record is not None:
        code, out, _ = run_cli("inspect", "out.png")
        assert record in out

    image[param.name] = second
    (root / "images.toml").write_text(nebula_manifest({"x": image}))
    code, out, _ = run_cli("plan", "--json")
    (action,) = json.loads(out)["actions"]
    assert action["action"] == "regenerate"  # the key
    assert [change["field"] for change in action["changes"]] == [param.name]


def test_a_lock_that_wrote_the_seed_twice_still_reads_and_stays_up_to_date(
    project, run_cli, fake_site, tmp_path
):
    root = project(
        {
            "images.toml": 'version = 1\n[defaults]\nbackend = "preview"\n'
            'model = "black-forest-labs/FLUX.1-schnell"\n[images.a]\nprompt = "x"\n'
            'seed = 42\nwidth = 64\nheight = 64\noutput = "a.png"\n'
        }
    )
    assert run_cli("apply").code == 0
    lock = root / "images.lock"
    text = lock.read_text()
    assert text.count("seed = 42") == 1
    old = text.replace('output = "a.png"\n', 'output = "a.png"\nseed = 42\n', 1)
    lock.write_text(old)  # as nebula-build 0.1 wrote it
    assert loads(old)["a"].seed is None and loads(old)["a"].params["seed"] == 42
    code, out, _ = run_cli("plan", "--detailed-exitcode")
    assert code == 0 and "No changes" in out
