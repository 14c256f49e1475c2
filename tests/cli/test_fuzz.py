"""Whatever a manifest says, the CLI answers with a clear line, never a traceback."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nebula_build.cli import main

KEYS = [
    "backend",
    "model",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_steps",
    "guidance_scale",
    "seed",
    "image",
    "mask",
    "output",
    "quality",
    "lossless",
    "resize",
    "fit",
    "resample",
    "widths",
    "metadata",
    "style",
    "matrix",
    "alt",
    "variant_pattern",
]
VALUES = st.one_of(
    st.integers(-5, 5000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(
        [
            '"@a"',
            '"a.png"',
            '"../x.png"',
            '"{kind}.png"',
            '"x.gif"',
            '"black-forest-labs/FLUX.1-Fill-dev"',
            '"preview"',
            '"nope"',
        ]
    ),
    st.lists(st.integers(-2, 3000), max_size=3),
    st.just({"kind": ["a", "b"]}),
)


def toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return (
            value
            if value.startswith('"')
            else '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        )
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return repr(value)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(KEYS), VALUES), max_size=8),
    st.binary(max_size=20),
)
def test_any_manifest_gets_an_answer_not_a_traceback(tmp_path_factory, fields, junk):
    root = tmp_path_factory.mktemp("fuzz")
    lines = [
        "version = 1",
        "[defaults]",
        'backend = "preview"',
        'model = "black-forest-labs/FLUX.1-schnell"',
        "width = 64",
        "height = 64",
    ]
    images: dict[str, dict[str, object]] = {
        "a": {"prompt": "x", "output": "a.png"},
        "b": {"prompt": "y", "output": "b.png"},
    }
    for name, key, value in fields:
        images[name][key] = value
    for name, table in images.items():
        lines.append(f"[images.{name}]")
        lines += [f"{key} = {toml(value)}" for key, value in table.items()]
    text = "\n".join(lines) + "\n"
    (root / "images.toml").write_bytes(text.encode() + (junk if junk[:1] == b"#" else b""))
    for command in ("validate", "plan"):
        out, err = io.StringIO(), io.StringIO()
        code = main(["-C", str(root), command], out=out, err=err)
        assert code in (0, 1, 2), err.getvalue()
        assert "Traceback" not in err.getvalue()
        if code == 1:
            assert err.getvalue().startswith("error: ")
