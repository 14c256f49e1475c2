"""Keys: what makes an image changed, and what never does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nebula_build.core.manifest import parse
from nebula_build.core.resolve import resolve
from nebula_build.core.spec import AssetSpec
from nebula_build.plugin.manager import load_registry

#: text without braces: `{name}` is a placeholder, an error in an image without rows;
#: and without lone surrogates, which no TOML file can hold
_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="{}")
FIELDS = {
    "prompt": st.text(_TEXT, min_size=1, max_size=30),
    "negative_prompt": st.text(_TEXT, max_size=20),
    "num_steps": st.integers(1, 80),
    "guidance_scale": st.floats(0, 30, allow_nan=False).map(lambda f: round(f, 2)),
    "width": st.sampled_from([64, 512, 1024]),
    "height": st.sampled_from([64, 768, 2048]),
}


def _toml(table: dict[str, object]) -> str:
    return tomli_w.dumps(table)


def _keys(text: str) -> dict[str, tuple[str, str]]:
    manifest = parse(text, Path("images.toml"), "images.toml")
    specs = resolve(manifest, load_registry(), lambda path: None).specs
    return {n: (s.generation_key, s.output_key) for n, s in specs.items()}


def _manifest(defaults: dict[str, object], image: dict[str, object]) -> str:
    return "version = 1\n[defaults]\n" + _toml(defaults) + "[images.a]\n" + _toml(image)


BASE = {"backend": "preview", "model": "stabilityai/stable-diffusion-xl-base-1.0"}


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELDS), st.randoms())
def test_reordering_keys_never_changes_a_key(fields, rng):
    image = {**fields, "prompt": fields.get("prompt", "p"), "output": "a.png"}
    shuffled = list(image.items())
    rng.shuffle(shuffled)
    assert _keys(_manifest(BASE, image)) == _keys(_manifest(BASE, dict(shuffled)))


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELDS))
def test_writing_a_default_out_explicitly_never_changes_a_key(defaults):
    image = {"output": "a.png"} if "prompt" in defaults else {"prompt": "p", "output": "a.png"}
    inherited = _manifest({**BASE, **defaults}, image)
    explicit = _manifest({**BASE, **defaults}, {**image, **defaults})
    moved_out = _manifest(BASE, {**image, **defaults})
    assert _keys(inherited) == _keys(explicit) == _keys(moved_out)


def test_builtin_defaults_written_out_change_nothing():
    implicit = _manifest(
        {"model": BASE["model"], "backend": "preview"}, {"prompt": "p", "output": "a.png"}
    )
    explicit = _manifest(
        {"model": BASE["model"], "backend": "preview"},
        {"prompt": "p", "output": "a.png", "width": 1024, "height": 1024},
    )
    assert _keys(implicit) == _keys(explicit)


def test_integer_and_float_guidance_are_the_same_key():
    a = _manifest(BASE, {"prompt": "p", "guidance_scale": 9, "output": "a.png"})
    b = _manifest(BASE, {"prompt": "p", "guidance_scale": 9.0, "output": "a.png"})
    assert _keys(a) == _keys(b)


def test_every_pixel_field_changes_the_generation_key_but_output_does_not():
    base = {
        "prompt": "p",
        "negative_prompt": "n",
        "num_steps": 20,
        "guidance_scale": 5.0,
        "width": 512,
        "height": 512,
        "output": "a.png",
    }
    first = _keys(_manifest(BASE, base))["a"]
    for field, value in (
        ("prompt", "q"),
        ("negative_prompt", "m"),
        ("num_steps", 21),
        ("guidance_scale", 5.5),
        ("width", 520),
        ("height", 520),
        ("seed", 3),
        ("model", "black-forest-labs/FLUX.1-schnell"),
    ):
        changed = {**base, field: value}
        if field == "model":
            del changed["negative_prompt"]
        assert _keys(_manifest(BASE, changed))["a"][0] != first[0], field
    moved = _keys(_manifest(BASE, {**base, "output": "img/other.png"}))["a"]
    assert moved == first
    reformatted = _keys(_manifest(BASE, {**base, "output": "a.webp"}))["a"]
    assert reformatted[0] == first[0] and reformatted[1] != first[1]


def test_moving_the_project_folder_never_changes_a_key(tmp_path, run_cli):
    source = tmp_path / "one"
    source.mkdir()
    Image.new("RGB", (1024, 1024), "gray").save(source / "in.png")
    Image.new("L", (1024, 1024), 255).save(source / "m.png")
    (source / "images.toml").write_text(
        'version = 1\n[defaults]\nbackend = "preview"\n[images.cap]\n'
        'model = "black-forest-labs/FLUX.1-Fill-dev"\nprompt = "a cap"\nimage = "in.png"\n'
        'mask = "m.png"\noutput = "cap.png"\n'
    )
    shutil.copytree(source, tmp_path / "elsewhere" / "two")
    first = json.loads(run_cli("-C", str(source), "plan", "--json").out)
    second = json.loads(run_cli("-C", str(tmp_path / "elsewhere/two"), "plan", "--json").out)
    assert first["actions"][0]["generation_key"] == second["actions"][0]["generation_key"]


def test_keys_hold_no_paths_or_secrets(monkeypatch):
    monkeypatch.setenv("NEBULA_API_KEY", "ak_canary_secret")
    spec = AssetSpec(
        name="a",
        backend="preview",
        model="m",
        prompt="p",
        width=64,
        height=64,
        output="deep/a.png",
        format="png",
        image="in.png",
        image_digest="d",
    )
    canonical = json.dumps(spec.generation_params())
    assert "in.png" not in canonical and "deep" not in canonical and "canary" not in canonical
