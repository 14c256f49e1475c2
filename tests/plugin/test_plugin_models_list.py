"""`nebula-build models` says which distribution provides a plugin and its models' labels."""

from __future__ import annotations

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
