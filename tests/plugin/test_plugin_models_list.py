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


def test_a_backend_named_as_models_json_own_key_is_left_out_as_broken(install, project, run_cli):
    """A plugin's backend named `_backends` had its models replaced, unsaid, by what
    `--json` says of every backend; a name with a line break in it was taken too."""
    install("under", plugin_source("_backends"))
    install("crlf", plugin_source("cr\\nlf"))
    project({"images.toml": "version = 1\n"})
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert sorted(data["_backends"]) == sorted(k for k in data if not k.startswith("_"))
    assert "cr\nlf" not in data
    for name in ("'_backends'", "'cr\\nlf'"):
        assert f"backend name {name} is not one" in err, err


def test_a_plugin_whose_models_fail_is_a_row_and_the_others_are_listed(install, project, run_cli):
    """`models` and `models --json` failed whole (exit 1) over one plugin's bug; a
    plugin that failed to import was already a row of its own."""
    install("flaky", plugin_source("flaky", "@classmethod\ndef models(cls, s):\n    1 / 0\n"))
    project({"images.toml": "version = 1\n"})
    code, out, err = run_cli("models")
    assert code == 0, err
    assert "backend preview\n" in out and "backend nebula\n" in out
    assert "backend flaky  broken: " in out and "ZeroDivisionError" in out
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    assert "preview" in json.loads(out) and "flaky" not in json.loads(out)
    assert err.startswith("warning: backend 'flaky' from nebula-flaky 0.1 failed in models")
    assert run_cli("models", "--backend", "flaky").code == 1


def test_an_unknown_model_of_a_backend_with_none_says_so(install, project, run_cli):
    """It read "(known: )"."""
    install("empty", plugin_source("empty", "@classmethod\ndef models(cls, s):\n    return {}\n"))
    manifest = (
        'version = 1\n[defaults]\nbackend = "empty"\nmodel = "empty/m"\n'
        '[images.a]\nprompt = "x"\noutput = "a.png"\n'
    )
    project({"images.toml": manifest})
    code, _, err = run_cli("validate")
    assert code == 1
    assert "unknown model 'empty/m' for backend 'empty' (it lists no models: `nebula-build " in err
    assert "known: )" not in err
