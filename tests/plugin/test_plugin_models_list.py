"""`nebula-build models` says which distribution provides a plugin and its models' labels."""

from __future__ import annotations

import json

from tests.plugin.conftest import plugin_source

LABELLED = plugin_source(
    "acme",
    """
    @classmethod
    def models(cls, settings):
        support = ModelSupport("acme/painter-v1", frozenset({"seed"}), label="Painter v1")
        return {"acme/painter-v1": support}
    """,
)


def test_models_names_a_plugins_distribution_and_its_models_labels(install, project, run_cli):
    """Neither was shown: the heading was "backend acme", the label nowhere."""
    install("acme", LABELLED)
    project({"images.toml": "version = 1\n"})
    code, out, _ = run_cli("models")
    assert code == 0
    lines = out.splitlines()
    heading = lines.index("backend acme (nebula-acme 0.1)")
    assert lines[heading + 1].split()[:3] == ["model", "label", "negative_prompt"]
    assert lines[heading + 2].startswith("  acme/painter-v1  Painter v1  ")
    assert "backend preview\n" in out  # a built-in's heading names no distribution


def test_models_json_adds_distribution_and_labels_beside_the_earlier_shape(
    install, project, run_cli
):
    """`--json` had neither; its earlier keys keep their shape and meaning."""
    install("acme", LABELLED)
    project({"images.toml": "version = 1\n"})
    code, out, _ = run_cli("models", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["acme"] == {"acme/painter-v1": ["seed"]}
    assert data["preview"]["black-forest-labs/FLUX.1-schnell"] == [
        "guidance_scale",
        "num_steps",
        "seed",
    ]
    about = data["_backends"]
    assert about["acme"] == {
        "distribution": "nebula-acme 0.1",
        "labels": {"acme/painter-v1": "Painter v1"},
    }
    assert about["preview"]["distribution"] is None
    assert about["preview"]["labels"]["black-forest-labs/FLUX.1-schnell"] == "FLUX.1 schnell"
    assert sorted(about) == sorted(k for k in data if not k.startswith("_"))
